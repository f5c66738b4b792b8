"""Stage upload: build a release once, ship it, unpack it, link it, give it a venv."""

from __future__ import annotations

from invoke import Collection, task

from . import remote
from .errors import FabdeployError


@task
def release(c):  # type: ignore[no-untyped-def]
    """Build, ship and install a new release without switching to it."""
    remote.session(c)
    raise FabdeployError("upload.release: not implemented yet")


@task
def build(c):  # type: ignore[no-untyped-def]
    """Build the release archive and wheelhouse locally, once."""
    remote.session(c)
    raise FabdeployError("upload.build: not implemented yet")


ns = Collection("upload")
ns.add_task(release, default=True)
ns.add_task(build)
