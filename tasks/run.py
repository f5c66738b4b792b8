"""Stage run: start, stop, restart and reload the app as a systemd service.

``fab run.reload`` is the zero-downtime switch onto the release `current` points to
(gunicorn's USR2 handover behind the health check); ``start``, ``stop`` and ``restart`` take
``--process NAME`` for a companion process. The work on a host, the switch and the one rule
of health are `tasks.host.service`'s (docs/run.md).
"""

from __future__ import annotations

from invoke import Collection, task

from .host.service import reload_host, restart, start, stop
from .ssh import fanout

PROCESS_HELP = {
    "process": "a companion process (PROCESS_<NAME>), web, or all; default: the web service"
}


@task(name="start", help=PROCESS_HELP)
def start_(c, process=""):  # type: ignore[no-untyped-def]
    """Start the app's service (or --process NAME) on each host."""
    fanout.on_each_host(c, "start", lambda host: start(host, process))


@task(name="stop", help=PROCESS_HELP)
def stop_(c, process=""):  # type: ignore[no-untyped-def]
    """Stop the app's service (or --process NAME) on each host."""
    fanout.on_each_host(c, "stop", lambda host: stop(host, process))


@task(name="restart", help=PROCESS_HELP)
def restart_(c, process=""):  # type: ignore[no-untyped-def]
    """Restart the app's service (a short outage; prefer reload), or --process NAME."""
    fanout.on_each_host(c, "restart", lambda host: restart(host, process))


@task
def reload(c):  # type: ignore[no-untyped-def]
    """Reload gracefully onto the release `current` points to, no dropped request."""
    fanout.on_each_host(c, "reload", reload_host)


ns = Collection("run")
ns.add_task(start_, default=True)
ns.add_task(stop_)
ns.add_task(restart_)
ns.add_task(reload)
