"""Roles: which hosts run what, which hosts a command runs on, and the primary host.

The env file groups hosts by role (``ROLE_<NAME>=host,host``; a host may have several) and
says what each role runs (``RUNS_<NAME>=web,worker``; by default the process named like the
role: role ``web`` runs gunicorn, role ``worker`` runs ``PROCESS_WORKER``). Without roles every
host runs the web process and every companion process. A host given with ``-H`` that is in no
role runs the web process only.

The *primary* host runs what must happen once per deploy (``once:`` hooks, MIGRATE_COMMAND,
``exec --once``): PRIMARY_HOST, else the first host of a role that runs the web process, else
the first host; when a command's hosts leave it out (``--roles worker``), their first one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..core.errors import ConfigError
from .named import host_key
from .settings import WEB

if TYPE_CHECKING:
    from .settings import Settings


T = TypeVar("T")


def roles_of(settings: Settings, host: str) -> tuple[str, ...]:
    """The roles ``host`` has (empty without roles, or for a host in none)."""
    key = host_key(host)
    return tuple(
        role for role, hosts in settings.roles.items() if key in (host_key(h) for h in hosts)
    )


def processes_of(settings: Settings, host: str) -> tuple[str, ...]:
    """What ``host`` runs: `WEB` and/or companion process names, in the env file's order."""
    every = (WEB, *settings.processes)
    if not settings.roles:
        return every
    mine = roles_of(settings, host)
    if not mine:
        return (WEB,)
    wanted = {name for role in mine for name in settings.runs.get(role, (role,))}
    return tuple(name for name in every if name in wanted)


def companions_of(settings: Settings, host: str) -> tuple[str, ...]:
    """The companion processes ``host`` runs (every process but `WEB`)."""
    return tuple(name for name in processes_of(settings, host) if name != WEB)


def serves_web(settings: Settings, host: str) -> bool:
    """Whether ``host`` runs gunicorn (the web process)."""
    return WEB in processes_of(settings, host)


def primary(settings: Settings, hosts: Sequence[T], name: Callable[[T], str] = str) -> T:
    """The one host of ``hosts`` for once-per-deploy work (see the module doc)."""
    keys = [host_key(name(h)) for h in hosts]
    wanted = [settings.primary_host] if settings.primary_host else []
    wanted += [h for hosts_ in settings.roles.values() for h in hosts_]
    for candidate in wanted:
        key = host_key(candidate)
        if key in keys and (candidate == settings.primary_host or serves_web(settings, candidate)):
            return hosts[keys.index(key)]
    return hosts[0]


def parse_roles(settings: Settings, text: str) -> tuple[str, ...]:
    """``--roles web,worker`` as role names, each one the env file defines."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in settings.roles]
    if unknown:
        known = ", ".join(settings.roles) or f"none: set ROLE_<NAME> in {settings.source}"
        raise ConfigError(f"--roles: unknown role {unknown[0]!r} (roles: {known})")
    return names


def select(settings: Settings, hosts: list[str], roles: str) -> list[str]:
    """The ``hosts`` that have one of ``--roles`` (all of them when it is empty)."""
    if not roles.strip():
        return hosts
    wanted = parse_roles(settings, roles)
    chosen = [h for h in hosts if set(roles_of(settings, h)) & set(wanted)]
    if not chosen:
        raise ConfigError(f"--roles {roles}: none of the hosts ({', '.join(hosts)}) has them")
    return chosen
