"""Stage test: the app's own test suite gates a deploy; a smoke check gates a switch."""

from __future__ import annotations

from invoke import Collection, task

from . import remote
from .errors import FabdeployError


@task
def local(c):  # type: ignore[no-untyped-def]
    """Run the app's test suite locally (TEST_COMMAND in APP_DIR)."""
    remote.session(c)
    raise FabdeployError("test.local: not implemented yet")


@task
def smoke(c):  # type: ignore[no-untyped-def]
    """Import the WSGI target with the current release's Python on each host."""
    remote.session(c)
    raise FabdeployError("test.smoke: not implemented yet")


ns = Collection("test")
ns.add_task(local, default=True)
ns.add_task(smoke)
