"""Env files -> one validated, typed `Settings` object.

This package is the only reader of ``config/<environment>.env`` files (over the base,
``config/common.env``, when there is one: `layers`, `merge`) and of the app's secrets file. Every other module receives a `Settings` (or the `Secrets` inside it) from
`load`; none reads the environment or the files on its own.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Callable

from invoke.context import Context

from ..core.errors import ConfigError
from . import parse
from .envfile import read_env_file
from .key import Loaded, field_values
from .named import NAMED_KEY, SETTING_KEY, app_settings, check_roles, named_values
from .project import cache_dir, environments, project_dir, selected_environment
from .settings import COMMON, KEYS, KEYS_BY_NAME, Secrets, Settings


def refuse_control_characters(raw: dict[str, tuple[str, int]], source: Path) -> None:
    """No value of an env file holds a control character (`parse.control_character`): a
    newline (``"a\\nb"`` in double quotes, or a quoted value over two lines) would start a
    new line in a unit file or a script; a `ConfigError` naming file, line and key, before
    anything else reads the values."""
    for name, (text, line) in raw.items():
        found = parse.control_character(text)
        if found:
            raise ConfigError(
                f"{source}:{line}: {name}: a value may not hold a control character or line "
                f"break (found {found})"
            )


def parse_values(raw: dict[str, tuple[str, int]], where: Callable[[str], str]) -> dict[str, Any]:
    """Check names and types of ``raw`` against `KEYS`; return ``{key: typed value}``.
    ``where(key)`` is the ``<file>:<line>: KEY`` errors name (``<file>: KEY`` for a key unset)."""
    values: dict[str, Any] = {}
    for name, (text, _) in raw.items():
        if NAMED_KEY.match(name) or SETTING_KEY.match(name):
            continue  # PROCESS_/ROLE_/RUNS_<NAME>: `named_values`; ENV_<NAME>: `app_settings`
        key = KEYS_BY_NAME.get(name)
        if key is None:
            close = difflib.get_close_matches(name, KEYS_BY_NAME, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{where(name)}: unknown key{hint}")
        try:
            values[name] = key.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{where(name)}: {exc}") from None
    for key in KEYS:
        if key.name in values:
            continue
        if key.required:
            raise ConfigError(f"{where(key.name)}: required key is missing ({key.help})")
        values[key.name] = key.parse(key.default)
    return values


def load_secrets(path_text: str, project: Path, where: str = "") -> Secrets:
    """Read the app's secrets file, checking it parses; values stay inside `Secrets`.
    ``where`` (``<env file>:<line>``) is named when the file is missing."""
    if not path_text:
        return Secrets(None, {})
    path = (project / path_text).resolve()
    if where and not path.is_file():
        raise ConfigError(f"{where}: SECRETS_FILE: {path}: secrets file (SECRETS_FILE) not found")
    raw = read_env_file(path, what="secrets file (SECRETS_FILE)")
    for name, (value, line) in raw.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise ConfigError(f"{path}:{line}: {name}: not a valid variable name")
        if "\0" in value:  # no environment can hold it; any other character is kept
            raise ConfigError(f"{path}:{line}: {name}: a secret may not hold NUL (\\x00)")
    values = {name: value for name, (value, _) in raw.items()}
    return Secrets(path, values, {name: line for name, (_, line) in raw.items()})


def secrets_files(project: Path) -> list[Path]:
    """The SECRETS_FILE every env file of ``project`` names (each ``config/*.env``, not only
    the environment a command runs against), resolved: no release ships one. An env file
    that cannot be read names none (the command against it says why)."""
    found = []
    for source in sorted((project / "config").glob("*.env")):
        try:
            text = read_env_file(source).get("SECRETS_FILE", ("", 0))[0]
        except ConfigError:
            continue
        if text.strip():
            found.append((project / text.strip()).resolve())
    return found


def layers(source: Path) -> list[tuple[Path, dict[str, tuple[str, int]]]]:
    """The files an environment reads, each ``(path, {KEY: (value, line)})``, the base first:
    `COMMON` (``config/common.env``) when it exists, then ``source``, each checked for
    control characters (`refuse_control_characters`)."""
    common = source.parent / f"{COMMON}.env"
    found = [(common, read_env_file(common))] if common.is_file() else []
    found.append((source, read_env_file(source)))
    for path, raw in found:
        refuse_control_characters(raw, path)
    return found


def merge(
    found: list[tuple[Path, dict[str, tuple[str, int]]]],
) -> tuple[dict[str, tuple[str, int]], dict[str, tuple[Path, int]]]:
    """`layers` as one file: each key's value from the last file that sets it (the
    environment's over the base, key by key), and where it came from: KEY -> (file, line)."""
    raw: dict[str, tuple[str, int]] = {}
    origins: dict[str, tuple[Path, int]] = {}
    for path, each in found:
        for key, (text, line) in each.items():
            raw[key] = (text, line)
            origins[key] = (path, line)
    return raw, origins


def refuse_shared_names(env: dict[str, str], secrets: Secrets, where: Callable[[str], str]) -> None:
    """A variable is an app setting (``ENV_<NAME>``) or a secret, never both: a `ConfigError`
    naming both places."""
    for name in sorted(set(env) & set(secrets.names())):
        raise ConfigError(
            f"{where(f'ENV_{name}')}: {name} is also a secret ({secrets.path}:{secrets.line(name)}): "
            "a variable is either a setting (ENV_) or a secret; keep it in one place"
        )


def build(environment: str, project: Path) -> Settings:
    """Read and validate ``config/<environment>.env`` under ``project``, over
    ``config/common.env`` when it exists (`layers`)."""
    config_dir = project / "config"
    source = config_dir / f"{environment}.env"
    if environment == COMMON:
        known = ", ".join(environments(config_dir)) or "none"
        raise ConfigError(
            f"{source}: the base every environment reads first, not an environment: name one "
            f"(environments here: {known})"
        )
    if not source.is_file():
        known = ", ".join(environments(config_dir)) or "none"
        raise ConfigError(f"{source}: environment file not found (environments here: {known})")
    raw, origins = merge(layers(source))

    def where(key: str) -> str:
        if key not in origins:
            return f"{source}: {key}"
        path, line = origins[key]
        return f"{path}:{line}: {key}"

    values = parse_values(raw, where)
    named = named_values(raw, where)
    check_roles(values, where, named)
    env = app_settings(raw, where)
    processes, roles, runs = named
    secrets = load_secrets(
        values["SECRETS_FILE"], project, where("SECRETS_FILE").rpartition(": ")[0]
    )
    refuse_shared_names(env, secrets, where)
    return Settings(
        environment=environment,
        source=source,
        project_dir=project,
        cache_dir=cache_dir(),
        **field_values(Settings, Loaded(project, values, roles)),
        processes=processes,
        roles=roles,
        runs=runs,
        lines={key: line for key, (_, line) in raw.items()},
        origins=origins,
        texts={key: text for key, (text, _) in raw.items()},
        app_env=env,
        secrets=secrets,
    )


def load(c: Context) -> Settings:
    """The settings of the environment this command runs against (the one config reader)."""
    return build(selected_environment(c), project_dir(c))
