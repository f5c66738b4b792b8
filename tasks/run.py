"""Stage run: start, stop, restart and reload the app as a systemd service."""

from __future__ import annotations

from invoke import Collection, task

from . import remote
from .errors import FabdeployError


@task
def start(c):  # type: ignore[no-untyped-def]
    """Start the app's service on each host."""
    remote.session(c)
    raise FabdeployError("run.start: not implemented yet")


@task
def stop(c):  # type: ignore[no-untyped-def]
    """Stop the app's service on each host."""
    remote.session(c)
    raise FabdeployError("run.stop: not implemented yet")


@task
def restart(c):  # type: ignore[no-untyped-def]
    """Restart the app's service (a short outage; prefer reload)."""
    remote.session(c)
    raise FabdeployError("run.restart: not implemented yet")


@task
def reload(c):  # type: ignore[no-untyped-def]
    """Reload gracefully onto the release `current` points to, no dropped request."""
    remote.session(c)
    raise FabdeployError("run.reload: not implemented yet")


ns = Collection("run")
ns.add_task(start, default=True)
ns.add_task(stop)
ns.add_task(restart)
ns.add_task(reload)
