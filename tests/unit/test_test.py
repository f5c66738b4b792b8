"""The test stage's local gate: TEST_COMMAND in APP_DIR, locally, even under `fab -H`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fabric import Connection
from invoke import Context

from tasks import config
from tasks.build import testrun
from tasks.core.errors import FabdeployError
from tasks.core.output import Output


def settings(tmp_path: Path, command: str) -> config.Settings:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text(
        f"APP_NAME=shop\nAPP_DIR=app\nTEST_COMMAND={command}\n"
    )
    return config.build("staging", tmp_path)


def output() -> tuple[Output, io.StringIO]:
    out = io.StringIO()
    return Output(out, out), out


def test_runs_in_app_dir_and_prefixes_lines(tmp_path: Path) -> None:
    out, text = output()
    testrun.run_suite(Context(), settings(tmp_path, "pwd"), out)
    assert f"[local] {tmp_path / 'app'}" in text.getvalue()
    assert "test: passed" in text.getvalue()


def test_failure_stops_the_deploy(tmp_path: Path) -> None:
    out, _ = output()
    with pytest.raises(
        FabdeployError, match=r"local tests failed \(exit 3\).*nothing was deployed"
    ):
        testrun.run_suite(Context(), settings(tmp_path, "exit 3"), out)


def test_runs_locally_even_when_given_a_connection(tmp_path: Path) -> None:
    out, text = output()
    conn = Connection("nowhere.invalid")  # never opened: the command must run here
    testrun.run_suite(conn, settings(tmp_path, "echo here"), out)
    assert "[local] here" in text.getvalue()


def test_empty_command_skips(tmp_path: Path) -> None:
    out, text = output()
    (tmp_path / "config").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\nAPP_DIR=app\nTEST_COMMAND=\n")
    assert testrun.run_suite(Context(), config.build("staging", tmp_path), out) == 0.0
    assert "no local tests" in text.getvalue()
