"""``fab exec``: a one-off command in the served release, as the app runs.

The command runs in `current` as the app user, with the release's venv first on PATH and the
app's secrets in its environment (`tasks.host.appenv`), on every host of the environment (or
of ``--roles``), or on the primary host only (``--once``: `tasks.config.roles.primary`). Output
is host-prefixed with secret values masked; ``--pty`` gives an interactive terminal
(``python manage.py shell``) on one host. The command's exit status becomes fab's: the first
non-zero one, naming the hosts that failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import task

from .core.errors import FabdeployError
from .host.appenv import exec_hosts, run_in_current
from .ssh import fanout, session

if TYPE_CHECKING:
    from .ssh.host import Host


@task(
    name="exec",
    positional=["command"],
    help={
        "command": 'the command line (quote it: fab exec "python manage.py migrate")',
        "once": "run on the primary host only (PRIMARY_HOST, else the first web host)",
        "pty": "interactive: a terminal on one host (python manage.py shell)",
        "roles": "only the hosts of these roles (ROLE_<NAME>), comma-separated",
    },
)
def exec_(c, command, once=False, pty=False, roles=""):  # type: ignore[no-untyped-def]
    """Run a command in the served release as the app user, venv on PATH, secrets set."""
    settings, hosts = session.session(c, roles=roles)
    chosen = exec_hosts(hosts, once=once, pty=pty)
    try:
        done = fanout.each(
            chosen,
            lambda host: run_in_current(host, command, pty=pty),
            1 if pty else settings.parallel,
        )
    finally:
        for host in hosts:
            host.close()
    failed: list[tuple[Host, int]] = []
    for host, status in done.items():
        if host in done.failed:
            host.output.line(host.name, str(status), err=True)
            failed.append((host, 255))
        elif status:
            failed.append((host, status))
    if failed:
        names = ", ".join(f"{h.name} (exit {code})" for h, code in failed)
        raise FabdeployError(f"exec failed on {names}", code=failed[0][1])
