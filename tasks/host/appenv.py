"""The app's environment on a host: the command line that runs something as the app runs.

`command_line(settings, where, command)` is the shell line (for `Host.run` with ``user=`` the app
user) that runs ``command`` in the release directory ``where``, with that release's venv first
on PATH (``VIRTUAL_ENV`` set, so ``python``, ``flask``, ``celery``, ``manage.py`` shebangs
resolve to it), ``where`` first on PYTHONPATH (the app's own packages import as they do under
gunicorn, whatever directory the script is in; a PYTHONPATH the app sets comes after it) and
the app's settings (/etc/<app>/settings, the ``ENV_<NAME>`` keys) then its secrets (from
``where/.env``) in its environment, parsed by ``scripts/with_secrets.py``, never sourced. Hooks, MIGRATE_COMMAND, SMOKE_COMMAND and
``fab exec`` use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from invoke.runners import Result

from ..config import roles as role_hosts
from ..core import shell
from ..core.errors import FabdeployError
from ..core.output import MaskedStream
from ..core.paths import layout
from ..core.shell import quote

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.host import Host


#: The helper that puts the secrets into the environment, shipped as package data.
WITH_SECRETS = Path(__file__).resolve().parent.parent / "scripts" / "with_secrets.py"


#: Seconds a command stopped (Ctrl-C, its timeout) has between TERM and KILL.
STOP_GRACE = 10


#: `run_bounded`'s exit status for a command that ran longer than its timeout (``scripts/bounded.sh``).
TIMED_OUT = 124


def command_line(settings: Settings, where: str, command: str, *, venv: bool = True) -> str:
    """``bash -c`` line running ``command`` in ``where`` like the app (see the module doc).

    ``venv=False`` (before a release has one) uses the host's PYTHON and leaves PATH and
    PYTHONPATH alone.
    """
    python = ".venv/bin/python" if venv else settings.python
    path = 'export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"; ' if venv else ""
    release = '"$PWD"' if venv else "''"
    script = (
        f"cd {quote(where)} && {path}exec {quote(python)} -c {quote(WITH_SECRETS.read_text())}"
        f' "$0" {release} {quote(layout(settings).settings_file)}'
    )
    return f"bash -c {quote(script)} {quote(command)}"


def run_bounded(
    host: Host,
    where: str,
    cmd: str,
    *,
    label: str,
    venv: bool = True,
    timeout: int = 0,
    warn: bool = False,
) -> Result:
    """Run ``cmd`` on ``host`` like the app (as `command_line` does), as the app user, under
    ``scripts/bounded.sh``: Ctrl-C (or a lost session) ends it and everything it started on the
    host, and so does ``timeout`` seconds (0: no limit); a failure raises unless ``warn``."""
    return host.script(
        shell.shell("bounded"),
        env={
            "DIR": where,
            "VENV": "yes" if venv else "no",
            "PYTHON": host.settings.python,
            "WITH_SECRETS": WITH_SECRETS.read_text(),
            "SETTINGS": layout(host.settings).settings_file,
            "COMMAND": cmd,
            "LABEL": label,
            "TIMEOUT": timeout,
            "GRACE": STOP_GRACE,
        },
        user=host.app_user,
        warn=warn,
        label=label,
    )


def run_in_current(host: Host, command: str, *, pty: bool = False) -> int:
    """Run ``command`` in `current` on ``host`` as the app does; return its exit status."""
    paths = layout(host.settings)
    line = command_line(host.settings, paths.current, command)
    missing = f"no release deployed here ({paths.current} is missing): run fab deploy first"
    guard = f"test -d {quote(paths.current + '/')} || {{ echo {quote(missing)} >&2; exit 127; }}; "
    line = f"bash -c {quote(guard + line)}"  # one command: sudo -u applies to all of it
    if not pty:
        result = host.run(line, user=host.app_user, warn=True, label="exec")
        return int(result.exited or 0)
    host.open()
    if host.app_user != host.conn.user:
        line = f"sudo -n -u {quote(host.app_user)} {line}"
    host.sessions += 1
    out = MaskedStream(host.output.out, host.output.mask)  # a terminal's: as it comes, masked
    try:
        result = host.conn.run(line, pty=True, warn=True, out_stream=out)
    finally:
        out.close()
    return int(result.exited or 0)


def exec_hosts(hosts: list[Host], *, once: bool, pty: bool) -> list[Host]:
    """The hosts ``exec`` runs on; an interactive command needs exactly one."""
    if once and hosts:
        chosen = [role_hosts.primary(hosts[0].settings, hosts, lambda host: host.name)]
    else:
        chosen = hosts
    if pty and len(chosen) != 1:
        raise FabdeployError(
            f"--pty runs on one host, and this environment has {len(chosen)}: add --once "
            "(the primary host) or name one with -H"
        )
    return chosen
