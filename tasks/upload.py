"""Stage upload: build a release once, ship it, unpack it, link it, give it a venv.

``fab upload.release`` runs the list `tasks.steps.lists.RELEASE` (lock, check, build,
upload, install, ready, unlock): a deploy that stops before the switch, its release left
installed and not served. ``fab upload.build`` builds the release and its packages for the
hosts' wheel tags (`tasks.host.facts.wheel_tags`) and says what would ship, then throws it
away. The build is `tasks.build.archive`'s (the packages: `tasks.build.packages`); a release
on a host, shipped, unpacked and given its venv, is `tasks.host.install`'s (docs/upload.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric import Connection
from invoke import Collection, task

from . import config
from .build import packages, wheels
from .build.archive import build
from .engine.flow import Flow, Options
from .engine.runner import execute
from .engine.summary import reported
from .host import facts as host_facts
from .ssh import session
from .steps.lists import RELEASE, known_points

if TYPE_CHECKING:
    pass


@task(help={"allow-dirty": "ship uncommitted changes of a git checkout (revision gets -dirty)"})
def release(c, allow_dirty=False):  # type: ignore[no-untyped-def]
    """Build, ship and install a new release without switching to it."""
    settings, hosts = session.session(c)
    if not hosts:
        return
    flow = Flow.locking(c, settings, hosts, "release", Options(allow_dirty=allow_dirty))
    with reported(flow, table=False):
        execute(flow, RELEASE, known_points())  # `RELEASE`, in parallel, with its hooks


@task(
    name="build",
    help={
        "allow-dirty": "build from uncommitted changes of a git checkout",
        "local": "build for this machine's Python only, without asking the hosts",
    },
)
def build_(c, allow_dirty=False, local=False):  # type: ignore[no-untyped-def]
    """Build the release and its packages for the hosts' Pythons and say what would ship."""
    settings = config.load(c)
    asks = not local and (settings.hosts or isinstance(c, Connection))  # -H or HOSTS
    hosts = session.session(c)[1] if asks else []
    try:
        targets = host_facts.wheel_tags(hosts, settings) if hosts else {}
        builder = wheels.host_builder(hosts, targets)
        built = build(settings, allow_dirty=allow_dirty, targets=targets, builder=builder)
    finally:
        for host in hosts:
            host.close()
    try:
        for found in built.packages:
            print(packages.describe(found))
        if not built.packages:
            print(f"packages: none shipped, each host installs from {settings.host_package_index}")
        print(f"source {built.release}.tar.gz: {built.size >> 10} KiB to every host")
    finally:
        built.cleanup()


ns = Collection("upload")
ns.add_task(release, default=True)
ns.add_task(build_)
