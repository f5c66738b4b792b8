"""Migrations: MIGRATE_COMMAND, once per deploy, before the smoke check.

A new release's health may need the new schema, so ``MIGRATE_COMMAND`` (for example
``python manage.py migrate --noinput``) runs once per deploy on the primary host
(`tasks.roles.primary`), in the new release's directory, as the app user, with the
release's venv on PATH and the app's secrets in its environment (`tasks.appenv`), after
every host has the release installed and before any smoke check. A failure stops the deploy
with no host switched.
"""

from __future__ import annotations

from . import appenv
from .errors import HostError
from .layout import Layout
from .remote import Host


def run(host: Host, release: str) -> bool:
    """Run MIGRATE_COMMAND in ``release`` on ``host``; False when there is none."""
    command = host.settings.migrate_command.strip()
    if not command:
        return False
    where = Layout(host.settings.deploy_root).release(release)
    host.say(f"migrate (once, on the primary host): {command}")
    result = host.run(
        appenv.command(host.settings, where, command),
        user=host.app_user,
        warn=True,
        label="migrate",
    )
    if result.failed:
        raise HostError(host.name, f"MIGRATE_COMMAND failed (exit {result.exited}): {command}")
    return True
