"""Stage monitor: logs, status, health, resources and release history."""

from __future__ import annotations

from invoke import Collection, task

from . import remote
from .errors import FabdeployError


@task
def status(c):  # type: ignore[no-untyped-def]
    """Show service state, release, revision, pid, memory and health per host."""
    remote.session(c)
    raise FabdeployError("monitor.status: not implemented yet")


@task
def logs(c):  # type: ignore[no-untyped-def]
    """Show the service's logs from every host (-n lines, --follow)."""
    remote.session(c)
    raise FabdeployError("monitor.logs: not implemented yet")


@task
def health(c):  # type: ignore[no-untyped-def]
    """Check the health path on every host; exit non-zero naming unhealthy ones."""
    remote.session(c)
    raise FabdeployError("monitor.health: not implemented yet")


@task
def resources(c):  # type: ignore[no-untyped-def]
    """Show load, memory, disk under the deploy root and releases kept."""
    remote.session(c)
    raise FabdeployError("monitor.resources: not implemented yet")


@task
def releases(c):  # type: ignore[no-untyped-def]
    """List the deploy history, newest first, marking the current release."""
    remote.session(c)
    raise FabdeployError("monitor.releases: not implemented yet")


ns = Collection("monitor")
ns.add_task(status, default=True)
ns.add_task(logs)
ns.add_task(health)
ns.add_task(resources)
ns.add_task(releases)
