"""Companion processes: a Celery worker, Celery beat, an RQ worker beside the web process.

Each ``PROCESS_<NAME>=command`` of the env file is a systemd unit of its own,
``<app>-<name>.service`` (`tasks.host.units.unit_name`), written by ``fab setup`` on the hosts whose roles
run it (`tasks.config.roles`). It runs ``command`` with bash in `current` as the app user, with
`current`'s venv first on PATH and the app's secrets (``/etc/<app>/env``) in its environment.
Its directory is resolved when it starts, so it keeps running its release until restarted.

A deploy restarts them after the web switch succeeded on every host (`restart`): systemd
sends TERM to the main process, waits up to STOP_TIMEOUT seconds (Celery's warm shutdown
finishes the running task), then KILLs what is left, and starts it on the new release. A
process that is not still up SETTLE seconds later fails the command with its journal lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import roles
from ..core import shell
from ..core.errors import HostError
from ..core.paths import layout
from . import units

if TYPE_CHECKING:
    from ..ssh.host import Host


#: Seconds a restarted process must stay up (same pid, no restart) to count as started.
SETTLE = 5


#: Journal lines shown for a process that did not come back.
JOURNAL_LINES = 30


def units_of(host: Host, process: str = "") -> list[str]:
    """The companion units ``host`` runs (``process``: only that one, which it must run)."""
    settings = host.settings
    mine = roles.companions_of(settings, host.name)
    if process:
        if process not in settings.processes:
            known = ", ".join(settings.processes) or "none: set PROCESS_<NAME>"
            raise HostError(host.name, f"unknown process {process!r} (processes: {known})")
        return [units.unit_name(settings, process)] if process in mine else []
    return [units.unit_name(settings, name) for name in mine]


def control(host: Host, verb: str, process: str = "") -> list[str]:
    """``systemctl VERB`` the companion units of ``host``; a start or restart checks that each
    stays up, failing with its journal. Returns the units."""
    units = units_of(host, process)
    if not units:
        return []
    result = host.script(
        shell.shell("restart_processes"),
        env={
            "UNITS": "\n".join(units),
            "SETTLE": SETTLE,
            "LINES": JOURNAL_LINES,
            "VERB": verb,
        },
        warn=True,
        label=f"{verb} processes",
    )
    if result.failed:
        journal = host.output.clean(result.stderr.strip())[-2000:]
        raise HostError(host.name, f"{verb} processes: {journal or 'failed'}")
    return units


def restart(host: Host) -> list[str]:
    """Restart every companion process of ``host`` gracefully, onto `current`."""
    return control(host, "restart")


def link_current(host: Host, release: str) -> None:
    """Point `current` at ``release`` on a host without the web process."""
    paths = layout(host.settings)
    host.script(
        shell.shell("link_current"),
        env={
            "ROOT": paths.root,
            "CURRENT": paths.current,
            "TMP_LINK": paths.current_tmp,
            "NEW_TARGET": f"releases/{release}",
        },
        label="link current",
    )
