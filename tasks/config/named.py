"""The keys named by the user: ``PROCESS_<NAME>`` (a companion process's command),
``ROLE_<NAME>`` (a role's hosts), ``RUNS_<NAME>`` (the processes a role runs) and
``ENV_<NAME>`` (an app setting: the variable ``<NAME>`` in the app's environment, not a
secret)."""

from __future__ import annotations

import re
from typing import Any, Callable

from ..core.errors import ConfigError
from . import parse
from .settings import WEB

#: A key named by the user: its kind (PROCESS, ROLE or RUNS) and its NAME.
NAMED_KEY = re.compile(r"^(PROCESS|ROLE|RUNS)_([A-Z][A-Z0-9_]{0,40})$")

#: An app setting: ``ENV_<NAME>``, ``<NAME>`` a variable name as the secrets file allows.
SETTING_KEY = re.compile(r"^ENV_([A-Za-z_][A-Za-z0-9_]*)$")

#: Variables fabdeploy or gunicorn set in the app's environment themselves: no ENV_ sets them.
RESERVED_VARIABLES = frozenset({"PATH", "VIRTUAL_ENV", "PYTHONPATH", "HOME", "USER", "LOGNAME"})
RESERVED_PREFIXES = ("FABDEPLOY_", "GUNICORN_")


def named_values(
    raw: dict[str, tuple[str, int]], where: Callable[[str], str]
) -> tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """The ``PROCESS_``, ``ROLE_`` and ``RUNS_<NAME>`` keys: processes, roles, what roles run."""
    processes: dict[str, str] = {}
    roles: dict[str, tuple[str, ...]] = {}
    runs: dict[str, tuple[str, ...]] = {}
    for name, (text, _) in raw.items():
        match = NAMED_KEY.match(name)
        if not match:
            continue
        kind, label = match.group(1), match.group(2).lower().replace("_", "-")
        try:
            if kind == "PROCESS":
                if label == WEB:
                    raise ValueError(f"'{WEB}' is gunicorn's process (WSGI_APP): name another")
                if not text.strip():
                    raise ValueError("expected the command that runs the process")
                processes[label] = parse.command(text.strip())
            elif kind == "ROLE":
                roles[label] = parse.hosts(text)
            else:
                runs[label] = tuple(parse.name(item) for item in parse.comma_list(text))
        except ValueError as exc:
            raise ConfigError(f"{where(name)}: {exc}") from None
    return processes, roles, runs


def app_settings(raw: dict[str, tuple[str, int]], where: Callable[[str], str]) -> dict[str, str]:
    """The ``ENV_<NAME>`` keys: variable name -> value, as written (``where(key)``: the
    ``<file>:<line>: KEY`` of a key, for errors)."""
    found: dict[str, str] = {}
    for key, (text, _) in raw.items():
        match = SETTING_KEY.match(key)
        if not match:
            continue
        name = match.group(1)
        if name in RESERVED_VARIABLES or name.startswith(RESERVED_PREFIXES):
            raise ConfigError(
                f"{where(key)}: {name} is set by fabdeploy or gunicorn in the app's environment; "
                "name the setting otherwise"
            )
        found[name] = text
    return found


def host_key(host: str) -> str:
    """``host`` or ``host:port`` as `tasks.ssh.host.Host` names it: no user, no port 22."""
    name = host.rpartition("@")[2]
    base, sep, port = name.rpartition(":")
    if sep and port.isdigit() and base.count(":") == 0:
        return base if port == "22" else name
    return name


def check_roles(
    values: dict[str, Any],
    where: Callable[[str], str],
    named: tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]],
) -> None:
    """Every role has hosts (of HOSTS, when it is set) and runs known processes; PRIMARY_HOST
    is one of the hosts: else a `ConfigError` naming file, line and key."""
    processes, roles, runs = named

    def key_of(prefix: str, role: str) -> str:
        return f"{prefix}_{role.upper().replace('-', '_')}"

    known = (WEB, *processes)
    for role, hosts in roles.items():
        if not hosts:
            raise ConfigError(f"{where(key_of('ROLE', role))}: role {role!r} has no hosts")
        listed = {host_key(h) for h in values["HOSTS"]}
        unknown = [h for h in hosts if listed and host_key(h) not in listed]
        if unknown:
            raise ConfigError(
                f"{where(key_of('ROLE', role))}: {unknown[0]} is not one of HOSTS "
                f"({', '.join(values['HOSTS'])})"
            )
        if role not in runs and role not in known:
            raise ConfigError(
                f"{where(key_of('ROLE', role))}: role {role!r} runs nothing: set "
                f"{key_of('RUNS', role)} to some of {', '.join(known)}"
            )
    for role, names in runs.items():
        if role not in roles:
            raise ConfigError(
                f"{where(key_of('RUNS', role))}: no role {role!r} (set {key_of('ROLE', role)})"
            )
        for item in names:
            if item not in known:
                raise ConfigError(
                    f"{where(key_of('RUNS', role))}: unknown process {item!r} "
                    f"(processes: {', '.join(known)})"
                )
    everyone = values["HOSTS"] or tuple(h for hosts in roles.values() for h in hosts)
    primary = values["PRIMARY_HOST"]
    if primary and host_key(primary) not in {host_key(h) for h in everyone}:
        raise ConfigError(
            f"{where('PRIMARY_HOST')}: {primary} is not one of the hosts ({', '.join(everyone)})"
        )
