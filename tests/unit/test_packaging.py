"""A regular install (not the editable one the tests use) carries every file fabdeploy needs,
and works in a project whose own tasks.py shadows fabdeploy's `tasks` package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_installed_copy_works_in_a_project_with_its_own_tasks_py(tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    for name in ("app.service.in", "gunicorn.conf.py.in", "logrotate.in"):
        assert (site / "tasks" / "templates" / name).is_file()
    for script in sorted((REPO / "tasks" / "scripts").glob("*.sh")):
        assert (site / "tasks" / "scripts" / script.name).is_file(), script.name
    assert (site / "tasks" / "py.typed").is_file() and (site / "fabdeploy" / "__init__.py").exists()

    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "config" / "production.env").write_text("APP_NAME=shop\nHOSTS=web1\n")
    (project / "tasks.py").write_text("def mine():\n    return 'the project own tasks.py'\n")
    (project / "fabfile.py").write_text(
        "import tasks\nfrom fabdeploy import ns\n\nassert tasks.mine()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["PYTHONPATH"] = str(site)
    fab = Path(sys.executable).with_name("fab")
    listed = subprocess.run(
        [str(fab), "--list"], cwd=project, env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    for task in ("deploy", "rollback", "production", "setup.all", "monitor.status"):
        assert f"  {task} " in listed.stdout
    shown = subprocess.run(
        [str(fab), "--help", "deploy"], cwd=project, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert "--skip-tests" in shown.stdout and "--fleet" in shown.stdout
