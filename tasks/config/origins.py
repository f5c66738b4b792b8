"""Where each value of an environment came from (``fab check --sources``): config/common.env,
the environment's file, a default, or ``-H``; secrets by name, their values masked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from .settings import KEYS, Settings

#: What a secret's value shows as (the values stay in `Secrets`).
HIDDEN = "***"
#: What an empty value shows as.
EMPTY = "(empty)"


class Origin(NamedTuple):
    """One key: its name, its value as written (or its default), and where it came from."""

    key: str
    value: str
    source: str


def shown_path(path: Path, project: Path) -> str:
    """``path`` relative to the project when it is inside it (``config/common.env``)."""
    try:
        return os.path.relpath(path, project) if path.is_relative_to(project) else str(path)
    except ValueError:
        return str(path)


def origins(settings: Settings, cli_hosts: list[str] | None = None) -> list[Origin]:
    """Every key of ``settings`` with its value and origin: the declared keys in their order,
    then the keys named by the user (``PROCESS_``, ``ROLE_``, ``RUNS_``, ``ENV_<NAME>``) in file
    order, then the secrets (``<secrets file>:<line>``, the value `HIDDEN`). ``cli_hosts``:
    the hosts given with ``-H``, which replace HOSTS."""
    project = settings.project_dir

    def source_of(key: str) -> str:
        path, line = settings.origins[key]
        return f"{shown_path(path, project)}:{line}"

    found = []
    for key in KEYS:
        if key.name == "HOSTS" and cli_hosts:
            found.append(Origin(key.name, ",".join(cli_hosts), "-H"))
        elif key.name in settings.origins:
            found.append(Origin(key.name, settings.texts[key.name], source_of(key.name)))
        else:
            found.append(Origin(key.name, key.default, "default"))
    declared = {key.name for key in KEYS}
    found += [
        Origin(name, settings.texts[name], source_of(name))
        for name in settings.origins
        if name not in declared
    ]
    secrets = settings.secrets
    if secrets.path is not None:
        where = shown_path(secrets.path, project)
        found += [Origin(name, HIDDEN, f"{where}:{secrets.line(name)}") for name in secrets.names()]
    return found


def render(rows: list[Origin]) -> list[str]:
    """``rows`` as aligned lines: ``KEY  value  source``, the source last."""
    width = max((len(row.key) for row in rows), default=0)
    values = [row.value if row.value else EMPTY for row in rows]
    value_width = min(max((len(value) for value in values), default=0), 48)
    return [
        f"{row.key:<{width}}  {value:<{value_width}}  {row.source}"
        for row, value in zip(rows, values)
    ]
