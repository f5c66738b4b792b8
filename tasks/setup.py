"""Stage setup: server packages, the app user, the directory layout and the unit file.

Every item checks the host first and changes it only when needed, reporting "changed" or
"no change" (a second ``fab setup`` prints "no change" for every item). Root actions use
``sudo -n``, each one a line of the sudoers rule ``setup.sudoers`` prints.

The items are `tasks.host.provision`'s; ``setup`` runs the list `tasks.steps.lists.SETUP`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Collection, task

from .engine.flow import Flow
from .engine.runner import execute
from .host import sudoers
from .host.provision import (
    app_user,
    directories,
    process_units,
    refuse_migration,
    running_keeps,
    service_files,
    shared_paths,
    system_packages,
    upload_secrets,
)
from .ssh import fanout, session
from .steps.lists import SETUP

if TYPE_CHECKING:
    from .ssh.host import Host


@task(name="all")
def all_(c):  # type: ignore[no-untyped-def]
    """Prepare hosts: packages, user, directories, secrets, unit file (idempotent)."""
    settings, hosts = session.session(c)
    if not hosts:
        return
    try:
        execute(Flow(c, settings, hosts, "setup"), SETUP)  # takes no lock: no deploy id
    finally:
        for host in hosts:
            host.close()


@task(name="packages")
def packages_(c):  # type: ignore[no-untyped-def]
    """Install the remote Python and venv support when missing."""
    fanout.on_each_host(c, "setup.packages", system_packages)


@task
def layout(c):  # type: ignore[no-untyped-def]
    """Create the app user and the deploy root (releases/, venvs/, shared/), upload secrets."""

    def work(host: Host) -> None:
        _, group = app_user(host)
        refuse_migration(host, group)
        directories(host, group)
        running_keeps(host, [upload_secrets(host, group)])
        shared_paths(host)

    fanout.on_each_host(c, "setup", work)


@task(name="service")
def service_(c):  # type: ignore[no-untyped-def]
    """Install the systemd unit, gunicorn's config and log rotation for the app."""

    def work(host: Host) -> None:
        _, group = app_user(host)
        refuse_migration(host, group)
        running_keeps(host, service_files(host, group) + process_units(host, group))

    fanout.on_each_host(c, "setup", work)


@task(name="sudoers")
def sudoers_(c):  # type: ignore[no-untyped-def]
    """Print the sudoers file the hosts need (docs/security.md#sudo); install it as root."""
    settings, hosts = session.session(c, fleet=True, data_on_stdout=True)
    if hosts:
        print(sudoers.for_hosts(settings, hosts), end="")


ns = Collection("setup")
ns.add_task(all_, default=True)
ns.add_task(packages_)
ns.add_task(layout)
ns.add_task(service_)
ns.add_task(sudoers_)
