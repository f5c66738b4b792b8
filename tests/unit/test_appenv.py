"""The app's environment on a host (`tasks.host.appenv`), run here under bash: the release first on
PYTHONPATH, so a script in a subdirectory imports the app's own package (issue 19, item 8)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from invoke import Context

from tasks import config
from tasks.core import secretsfile
from tasks.core.output import Output
from tasks.host import appenv

SCRIPT = "import sys, app\nprint('imported', app.NAME, sys.path[1:3])\n"


def release(tmp_path: Path, secrets: dict[str, str]) -> tuple[config.Settings, Path]:
    """A project whose settings name it, and a release dir: a venv python, ``app/`` and
    ``scripts/migrate.py`` importing it, ``.env`` with ``secrets``."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "staging.env").write_text("APP_NAME=shop\n")
    where = tmp_path / "releases" / "R1"
    (where / ".venv" / "bin").mkdir(parents=True)
    (where / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (where / "app").mkdir()
    (where / "app" / "__init__.py").write_text("NAME = 'shop'\n")
    (where / "scripts").mkdir()
    (where / "scripts" / "migrate.py").write_text(SCRIPT)
    (where / ".env").write_text(secretsfile.render(secrets))
    return config.build("staging", tmp_path), where


def run(line: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def test_a_script_in_a_subdirectory_imports_the_app_package(tmp_path: Path) -> None:
    settings, where = release(tmp_path, {"GREETING": "hi"})
    done = run(appenv.command_line(settings, str(where), "python scripts/migrate.py"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported shop")


def test_the_release_comes_before_the_apps_own_pythonpath(tmp_path: Path) -> None:
    settings, where = release(tmp_path, {"PYTHONPATH": "/opt/extra:/opt/more"})
    shown = run(appenv.command_line(settings, str(where), 'echo "$PYTHONPATH"'))
    assert shown.stdout.strip() == f"{where}:/opt/extra:/opt/more"
    done = run(appenv.command_line(settings, str(where), "python scripts/migrate.py"))
    assert done.stdout.strip() == f"imported shop ['{where}', '/opt/extra']", done.stderr


def test_without_a_venv_the_pythonpath_is_left_alone(tmp_path: Path) -> None:
    settings, where = release(tmp_path, {})
    line = appenv.command_line(settings, str(where), 'echo "[$PYTHONPATH]"', venv=False)
    assert run(line).stdout.strip() == "[]"


class LocalHost:
    """A host that runs its commands here under bash (the app user: whoever runs the tests)."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings, self.app_user, self.out = settings, "", ""

    def run(self, line: str, **kwargs: object) -> SimpleNamespace:
        done = run(line)
        self.out += done.stdout + done.stderr
        return SimpleNamespace(exited=done.returncode)


def test_exec_runs_in_current_as_the_app(tmp_path: Path) -> None:
    """`fab exec`'s line: in `current`, with the release's venv and secrets; its exit status
    (the module's `command_line` was once shadowed here by the parameter of that name)."""
    _, where = release(tmp_path, {"GREETING": "hi"})
    (tmp_path / "config" / "staging.env").write_text(f"APP_NAME=shop\nDEPLOY_ROOT={tmp_path}\n")
    host = LocalHost(config.build("staging", tmp_path))
    assert appenv.run_in_current(host, "exit 3") == 127  # type: ignore[arg-type]
    assert "no release deployed here" in host.out
    (tmp_path / "current").symlink_to(where)
    command = 'python scripts/migrate.py && echo "$GREETING from $PWD" && exit 3'
    assert appenv.run_in_current(host, command) == 3  # type: ignore[arg-type]
    assert "imported shop" in host.out
    assert f"hi from {tmp_path}/current" in host.out


class PtyHost(LocalHost):
    """A host whose ``--pty`` commands run here, their output streamed as it comes (invoke's
    runner; no terminal, since pytest's stdin is none: tests/integration/test_deploy.py has
    the real one)."""

    def __init__(self, settings: config.Settings, out: io.StringIO) -> None:
        super().__init__(settings)
        self.output = Output(out, out, mask=settings.secrets.values())
        self.sessions = 0
        self.conn = SimpleNamespace(user="", run=self.run_pty)

    def open(self) -> None:
        """Nothing to connect to."""

    def run_pty(self, line: str, **kwargs: Any) -> Any:
        """``conn.run``: here, reading no keyboard (pytest has none to give)."""
        return Context().run(line, in_stream=False, **kwargs)


def test_exec_pty_masks_secrets_in_the_terminals_output(tmp_path: Path) -> None:
    token = "tok-5d1c9e0a7b3f11"
    _, where = release(tmp_path, {"API_TOKEN": token})
    (tmp_path / "secrets.env").write_text(f"API_TOKEN={token}\n")
    (tmp_path / "config" / "staging.env").write_text(
        f"APP_NAME=shop\nDEPLOY_ROOT={tmp_path}\nSECRETS_FILE=secrets.env\n"
    )
    (tmp_path / "current").symlink_to(where)
    out = io.StringIO()
    host = PtyHost(config.build("staging", tmp_path), out)
    command = (
        'echo "token $API_TOKEN."; printf "%s" "${API_TOKEN:0:6}"; sleep 0.05; '
        'echo "${API_TOKEN:6}" done'
    )
    assert appenv.run_in_current(host, command, pty=True) == 0  # type: ignore[arg-type]
    shown = out.getvalue()
    assert "token ***." in shown and "*** done" in shown  # split in two writes: masked too
    assert token not in shown and token[:6] not in shown and token[6:] not in shown


def test_the_app_settings_come_first_then_the_secrets(tmp_path: Path) -> None:
    settings, where = release(tmp_path, {"SHARED": "secret", "TOKEN": "t"})
    line = appenv.command_line(settings, str(where), 'echo "$SITE $SHARED $TOKEN"')
    assert "/etc/shop/settings" in line  # the host's settings file, read by with_secrets.py
    script = appenv.WITH_SECRETS.read_text()
    own = tmp_path / "settings"
    own.write_text(secretsfile.render({"SITE": "https://shop.example", "SHARED": "setting"}))
    for given, expected in ((own, "https://shop.example secret t"), (tmp_path / "none", " secret t")):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", script, 'echo "$SITE $SHARED $TOKEN"', "", str(given)],
            cwd=where, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert (done.returncode, done.stdout.strip()) == (0, expected.strip()), done.stderr
