"""``--json`` on status, health, resources and releases: one JSON document, a list with an
object per host in the shape docs/json.md documents, and nothing else on stdout."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Context

from tasks import monitor
from tasks.core import report
from tasks.core.errors import FabdeployError
from tasks.core.output import Output
from tasks.ssh import session
from tests.unit.test_monitor import deployed, fake_sudo, free_port, local_hosts, make_settings  # noqa: F401

REPO = Path(__file__).resolve().parents[2]

#: The keys of each task's per-host objects, as docs/json.md lists them.
STATUS_KEYS = {
    "host", "error", "unreachable", "healthy", "problems", "state", "state_detail", "release",
    "release_missing", "revision", "pid", "pid_alive", "workers", "rss_kb", "cpu", "uptime",
    "health_status", "health_ms", "health_error", "web", "processes", "settings",
}  # fmt: skip
RESOURCES_KEYS = {
    "host", "error", "unreachable", "load", "cpus", "mem_total_kb", "mem_available_kb",
    "disk_path", "disk_total_kb", "disk_free_kb", "releases", "current",
}  # fmt: skip
RELEASES_KEYS = {"host", "error", "unreachable", "current", "has_log", "entries"}
ENTRY_KEYS = {
    *("time", "action", "release", "revision", "user", "result", "detail", "deploy_id", "current"),
}


@pytest.fixture
def two_hosts(tmp_path: Path, fake_sudo: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    settings = make_settings(tmp_path, f"BIND=127.0.0.1:{free_port()}\n")
    deployed(settings, releases=3)
    said = io.StringIO()
    hosts = local_hosts(settings, said, "web1", "web2")
    monkeypatch.setattr(session, "session", lambda c, **kw: (settings, hosts))
    return said


def document(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """stdout, which must be exactly one JSON document: a list of objects."""
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, list) and all(isinstance(item, dict) for item in data)
    return data


def test_status_json(two_hosts: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    monitor.status(Context(), json=True)
    data = document(capsys)
    assert [item["host"] for item in data] == ["web1", "web2"]
    for item in data:
        assert set(item) == STATUS_KEYS
        assert item["release"] == "20261124T020000.000Z" and item["state"] == "active"
        assert item["revision"]["user"] == "ann@laptop" and item["healthy"] is False
        assert item["problems"] and item["health_status"] is None
    assert two_hosts.getvalue() == ""  # no table


def test_health_json_prints_the_document_then_fails(
    two_hosts: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FabdeployError, match="2 of 2 hosts unhealthy"):
        monitor.health(Context(), json=True)
    data = document(capsys)
    assert [set(item) for item in data] == [STATUS_KEYS, STATUS_KEYS]
    assert data[0]["problems"][0].startswith("health check")
    assert "UNHEALTHY" not in two_hosts.getvalue()


def test_resources_json(two_hosts: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    monitor.resources(Context(), json=True)
    data = document(capsys)
    assert [set(item) for item in data] == [RESOURCES_KEYS, RESOURCES_KEYS]
    assert len(data[0]["load"]) == 3 and all(isinstance(x, float) for x in data[0]["load"])
    assert data[0]["releases"] == 3 and data[0]["current"] == "20261124T020000.000Z"


def test_releases_json(two_hosts: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    monitor.releases(Context(), limit=2, json=True)
    data = document(capsys)
    assert set(data[0]) == RELEASES_KEYS
    entries = data[0]["entries"]
    assert [set(e) for e in entries] == [ENTRY_KEYS, ENTRY_KEYS]
    assert [(e["release"], e["current"]) for e in entries] == [
        ("20261124T020000.000Z", True),
        ("20261124T010000.000Z", False),
    ]


def test_an_unreachable_host_is_an_object_and_stdout_holds_only_json(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text(
        f"APP_NAME=shop\nHOSTS=127.0.0.1:{free_port()}\nCONNECT_TIMEOUT=5\n"
    )
    (tmp_path / "fabfile.py").write_text("from tasks import ns\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    fab = str(Path(sys.executable).with_name("fab"))
    for task in ("status", "health", "resources", "releases"):
        proc = subprocess.run(
            [fab, "staging", task, "--json"], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        [item] = json.loads(proc.stdout)
        assert item["unreachable"] is True and "cannot connect" in item["error"]
        assert "did not answer" in proc.stderr or "unhealthy" in proc.stderr


@pytest.mark.parametrize(
    "secret",
    ['pa"ss', "back\\slash", "tab\there", "café-crème", "line\nbreak", "</script>"],
)
def test_json_is_masked_before_it_is_serialized(
    secret: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON escapes a quote, a backslash, a control character and (ensure_ascii) any letter
    beyond ASCII: masking the serialized text would miss those secrets."""
    clean = Output(io.StringIO(), mask=[secret]).clean
    data = [{"host": "web1", "error": f"hook said {secret}!", secret: [secret, 3, None]}]
    report.print_json(data, clean)
    printed = capsys.readouterr().out
    assert json.loads(printed) == [
        {"host": "web1", "error": "hook said ***!", "***": ["***", 3, None]}
    ]
    assert json.dumps(secret)[1:-1] not in printed and secret not in printed
    report.write_json(str(tmp_path / "summary.json"), data, clean)
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(printed)
