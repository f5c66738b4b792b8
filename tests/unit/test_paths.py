"""Where things live: the deploy root's paths from `layout(settings)`, the project's own files
from `local_state(settings)`, and no other module spelling either."""

from __future__ import annotations

import re
from pathlib import Path

from tasks import config
from tasks.core import paths

TASKS = Path(paths.__file__).resolve().parents[1]


def settings(tmp_path: Path, extra: str = "") -> config.Settings:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\n" + extra)
    return config.build("staging", tmp_path)


def test_layout_is_under_deploy_root(tmp_path: Path) -> None:
    assert paths.layout(settings(tmp_path)).current == "/srv/shop/current"
    moved = paths.layout(settings(tmp_path, "DEPLOY_ROOT=/opt/shop\n"))
    assert (moved.root, moved.release("R1"), moved.logs) == (
        "/opt/shop", "/opt/shop/releases/R1", "/opt/shop/shared/log",
    )  # fmt: skip


def test_the_apps_settings_and_runtime_files_are_outside_the_deploy_root(tmp_path: Path) -> None:
    moved = paths.layout(settings(tmp_path, "DEPLOY_ROOT=/opt/shop\n"))
    assert (moved.etc, moved.env_file, moved.gunicorn_conf) == (
        "/etc/shop", "/etc/shop/env", "/etc/shop/gunicorn.conf.py",
    )  # fmt: skip
    assert (moved.run, moved.pids, moved.pidfile) == ("/run/shop", "/run/shop", "/run/shop/gunicorn.pid")  # fmt: skip
    assert (moved.legacy_env_file, moved.legacy_gunicorn_conf, moved.legacy_pids) == (
        "/opt/shop/shared/.env", "/opt/shop/shared/gunicorn.conf.py", "/opt/shop/shared/pids",
    )  # fmt: skip


def test_local_state_is_under_the_project(tmp_path: Path) -> None:
    state = paths.local_state(settings(tmp_path))
    local = tmp_path / ".fabdeploy"
    assert state.root == local
    assert state.deploy_record == local / "deploys" / "staging.json"
    assert state.lock_token == local / "locks" / "staging.token"
    assert (state.wheels, state.test_venvs, state.tmp) == (
        local / "wheels", local / "test-venvs", local / "tmp",
    )  # fmt: skip


def test_no_module_spells_the_paths_itself() -> None:
    """Only core/paths.py makes a `Layout` or names the local state's directory."""
    spelled = re.compile(r"\bLayout\(|[\"']\.fabdeploy[\"'/]|\.deploy_root\b")
    found = [
        f"{path.relative_to(TASKS)}: {line.strip()}"
        for path in sorted(TASKS.rglob("*.py"))
        if path.name not in ("paths.py", "config.py") and "config" not in path.parts[-2:-1]
        for line in path.read_text().splitlines()
        if spelled.search(line)
    ]
    assert found == []
