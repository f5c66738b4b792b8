"""The app's logs on a host: the journal and LOG_FILES, once or followed (``scripts/logs.sh``)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..core import shell
from ..core.errors import FabdeployError, detail
from ..ssh.fanout import ask
from . import units
from .status import base_env

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.fanout import Reply
    from ..ssh.host import Host


def log_patterns(settings: Settings) -> list[str]:
    """``error.log`` and the LOG_FILES globs, relative to shared/log, without repeats."""
    patterns = ["error.log"]
    for pattern in settings.log_files:
        pattern = pattern.strip().lstrip("/")
        if pattern and pattern not in patterns:
            patterns.append(pattern)
    return patterns


def logs_env(host: Host, lines: int, follow: bool) -> dict[str, object]:
    """What ``scripts/logs.sh`` reads: the journal of every unit of the environment (one
    command line on every host, as the sudoers rule allows it: `tasks.host.sudoers`)."""
    return {
        **base_env(host),
        "PATTERNS": "\n".join(log_patterns(host.settings)),
        "LINES": max(int(lines), 0),
        "FOLLOW": "yes" if follow else "no",
        "JOURNAL_UNITS": "\n".join(units.environment_units(host.settings)),
    }


def follow_logs(hosts: list[Host], lines: int) -> None:
    """Stream every host's logs at once (a thread and one command per host) until Ctrl-C.

    Ctrl-C closes every connection, which ends each remote script (it waits for its stdin to
    close, then stops journalctl and tail) and returns quietly. A host that could not stream
    is reported at once and, at the end, makes the task exit 1.
    """
    stopping = threading.Event()
    errors: dict[str, str] = {}

    def stream(host: Host) -> None:
        try:
            host.open()
            result = host.script(
                shell.shell("logs"), env=logs_env(host, lines, True), warn=True, label="logs"
            )
            if result.failed and not stopping.is_set():
                errors[host.name] = f"log stream ended (exit {result.exited})"
        except Exception as exc:  # reported per host
            if not stopping.is_set():
                errors[host.name] = detail(exc)
        if host.name in errors:
            host.output.line(host.name, errors[host.name], err=True)

    threads = [
        threading.Thread(target=stream, args=(h,), name=f"logs-{h.name}", daemon=True)
        for h in hosts
    ]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.2)
    except KeyboardInterrupt:
        stopping.set()
    try:
        for host in hosts:
            host.close()  # ends each channel: the remote script sees EOF and stops
        for thread in threads:
            thread.join(2)
    except KeyboardInterrupt:  # a second Ctrl-C while closing
        pass
    if errors:
        raise FabdeployError(
            f"logs: {len(errors)} of {len(hosts)} hosts could not stream: {', '.join(errors)}"
        )


def read_logs(hosts: list[Host], settings: Settings, lines: int) -> list[Reply]:
    """The last ``lines`` lines of every host's journals and log files (``scripts/logs.sh``)."""
    return ask(hosts, settings, shell.shell("logs"), lambda h: logs_env(h, lines, False), "logs")
