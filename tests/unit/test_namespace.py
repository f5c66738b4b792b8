"""The root namespace reads config/ and warns on first use, never at import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tasks
from tasks import config

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
HIDDEN = "environment 'test' is hidden by the task of that name"


def project(tmp_path: Path) -> Path:
    """A project with a staging environment and one (test) that a collection hides."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\nHOSTS=web1\n")
    (tmp_path / "config" / "test.env").write_text("APP_NAME=shop\n")
    (tmp_path / "fabfile.py").write_text("from tasks import ns\n")
    return tmp_path


def python(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FABDEPLOY_PROJECT_DIR", None)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )


def test_importing_reads_no_config_and_prints_nothing(tmp_path: Path) -> None:
    root = project(tmp_path)
    code = (
        "import tasks\n"
        "from tasks import config\n"
        "config.environments = None  # reading config/ now would fail\n"
        "from fabdeploy import ns\n"
        "print(type(ns).__name__)\n"
    )
    proc = python(root, code)
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("Namespace\n", "")


def test_first_use_adds_environments_and_warns_once(tmp_path: Path) -> None:
    root = project(tmp_path)
    code = (
        "from tasks import ns\n"
        "print('staging' in ns.task_names, 'staging' in ns.task_names)\n"
        "print(ns.configuration()['fabdeploy']['project_dir'])\n"
    )
    proc = python(root, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"True True\n{root.resolve()}\n"
    assert proc.stderr.count(HIDDEN) == 1


def test_namespace_loads_on_first_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path)
    seen: list[Path] = []
    found = config.environments
    monkeypatch.setattr(config, "environments", lambda d: seen.append(d) or found(d))
    ns = tasks.namespace(project_dir=root)
    assert seen == []
    assert ns["staging"].name == "staging"
    assert ns["deploy"] is not None and seen == [root.resolve() / "config"]


def test_fab_list_shows_environments_and_warns_once(tmp_path: Path) -> None:
    root = project(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [FAB, "--list"], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "  staging " in proc.stdout
    assert proc.stderr.count(HIDDEN) == 1


def test_the_names_fabfiles_used_before_the_layers_still_work() -> None:
    """A fabfile written for the flat package (docs/hooks.md, docs/importing.md) still loads."""
    from tasks import deploy, lock, remote, ssh, trust

    assert deploy.unlock is lock.unlock
    assert deploy.trust is trust.trust
    assert remote.session is ssh.session.session
    assert tasks.remote is remote
