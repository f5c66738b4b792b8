"""Migrations: MIGRATE_COMMAND, once per deploy (or on every host), before the smoke check.

A new release's health may need the new schema, so ``MIGRATE_COMMAND`` (for example
``python manage.py migrate --noinput``) runs in the new release's directory, as the app user,
with the release's venv on PATH, the release on PYTHONPATH and the app's secrets in its
environment (`tasks.host.appenv`), after every host has the release installed and before any smoke
check. ``MIGRATE_ON`` says where: ``primary`` (the default) once per deploy on the primary host
(`tasks.config.roles.primary`), for a database every host shares; ``all`` on every host that gets the
release, for a database each host keeps itself (SQLite in shared/). A fleet of several web
hosts that migrates only the primary while its database looks host-local gets a warning from
``check``, ``plan`` and ``deploy`` (`local_database_warning`).

The command is bounded (`appenv.run_bounded`): Ctrl-C ends it on the host, and so does
MIGRATE_TIMEOUT. A failure, a timeout or an interruption stops the deploy with no host
switched and the new release removed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..config import roles
from ..core.errors import HostError
from ..core.paths import layout
from . import appenv

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.host import Host


T = TypeVar("T")

#: MIGRATE_ON's values.
PRIMARY, ALL = "primary", "all"


#: What a linked path holding a host-local database ends with.
DATABASE_FILES = (".sqlite3", ".sqlite", ".db")


def hosts(settings: Settings, among: Sequence[T], name: Callable[[T], str] = str) -> list[T]:
    """The hosts of ``among`` MIGRATE_COMMAND runs on: none without one, the primary host, or
    every host (MIGRATE_ON=all)."""
    if not settings.migrate_command.strip() or not among:
        return []
    if settings.migrate_on == ALL:
        return list(among)
    return [roles.primary(settings, among, name)]


def where_line(settings: Settings, among: Sequence[str]) -> str:
    """Where MIGRATE_COMMAND runs, for ``check`` and ``plan`` ("" without one)."""
    chosen = hosts(settings, among)
    if not chosen:
        return ""
    if settings.migrate_on == ALL:
        return f"MIGRATE_COMMAND runs on every host ({len(chosen)}, MIGRATE_ON=all)"
    return f"MIGRATE_COMMAND runs once, on the primary host {chosen[0]} (MIGRATE_ON=primary)"


def local_database(settings: Settings) -> str:
    """Why the app's database looks host-local (a linked SQLite file, a secret holding an
    ``sqlite:`` URL), or ""."""
    for key, paths in (("LINKED_FILES", settings.linked_files), ("LINKED_DIRS", settings.linked_dirs)):  # fmt: skip
        for path in paths:
            if path.lower().endswith(DATABASE_FILES):
                return f"{key} has {path}"
    names = settings.secrets.names_where(lambda value: value.strip().lower().startswith("sqlite:"))
    if names:
        return f"the secret {names[0]} is an sqlite: URL"
    return ""


def local_database_warning(settings: Settings, among: Sequence[str]) -> str:
    """A warning when several of the hosts ``among`` serve the web, MIGRATE_COMMAND runs on the
    primary only (MIGRATE_ON not set) and the database looks host-local; else ""."""
    web = [name for name in among if roles.serves_web(settings, name)]
    if not settings.migrate_command.strip() or settings.migrate_on != PRIMARY or len(web) < 2:
        return ""
    why = local_database(settings)
    if not why or "MIGRATE_ON" in settings.lines:
        return ""
    primary = roles.primary(settings, among)
    return (
        f"MIGRATE_COMMAND runs on the primary host only ({primary}), but the database looks "
        f"host-local ({why}) and {len(web)} hosts serve the web: the others' databases would "
        "never be migrated. Set MIGRATE_ON=all to migrate on every host, or MIGRATE_ON=primary "
        f"if every host shares one database (either silences this) in {settings.source}"
    )


def migrate_release(host: Host, release: str) -> bool:
    """Run MIGRATE_COMMAND in ``release`` on ``host``; False when there is none."""
    settings = host.settings
    command = settings.migrate_command.strip()
    if not command:
        return False
    where = layout(settings).release(release)
    on = "on every host" if settings.migrate_on == ALL else "once, on the primary host"
    host.say(f"migrate ({on}): {command}")
    result = appenv.run_bounded(
        host, where, command, label="MIGRATE_COMMAND", timeout=settings.migrate_timeout, warn=True
    )
    if result.exited == appenv.TIMED_OUT and settings.migrate_timeout:
        raise HostError(
            host.name,
            f"MIGRATE_COMMAND ran longer than MIGRATE_TIMEOUT ({settings.migrate_timeout} s) and "
            f"was stopped on the host: {command}. Raise MIGRATE_TIMEOUT in {settings.source} "
            "(0: no limit) if it needs longer",
        )
    if result.failed:
        raise HostError(host.name, f"MIGRATE_COMMAND failed (exit {result.exited}): {command}")
    return True
