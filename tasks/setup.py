"""Stage setup: server packages, the app user, the directory layout and the unit file."""

from __future__ import annotations

from invoke import Collection, task

from . import remote
from .errors import FabdeployError


@task(name="all")
def all_(c):  # type: ignore[no-untyped-def]
    """Prepare hosts: packages, user, directories, unit file (idempotent)."""
    remote.session(c)
    raise FabdeployError("setup.all: not implemented yet")


@task
def packages(c):  # type: ignore[no-untyped-def]
    """Install the remote Python and venv support when missing."""
    remote.session(c)
    raise FabdeployError("setup.packages: not implemented yet")


@task
def layout(c):  # type: ignore[no-untyped-def]
    """Create the deploy root: releases/, shared/, shared/log/."""
    remote.session(c)
    raise FabdeployError("setup.layout: not implemented yet")


@task
def service(c):  # type: ignore[no-untyped-def]
    """Install the systemd unit and log rotation for the app."""
    remote.session(c)
    raise FabdeployError("setup.service: not implemented yet")


ns = Collection("setup")
ns.add_task(all_, default=True)
ns.add_task(packages)
ns.add_task(layout)
ns.add_task(service)
