"""Which project and environment a command runs against: the config dir, its env files,
the environment chosen on the command line, fabdeploy's part of the invoke config."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from invoke.context import Context

from .parse import NAME
from .settings import COMMON, DEFAULT_ENVIRONMENT, Settings

#: Env files in the config dir that are not deploy targets: documentation, and the base every
#: environment reads first (config/common.env).
NOT_ENVIRONMENTS = frozenset({"example", COMMON})


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory from ``start`` (the cwd) upward that has a ``config/`` of env files."""
    explicit = os.environ.get("FABDEPLOY_PROJECT_DIR")
    if explicit:
        return Path(explicit).resolve()
    fabfile = getattr(sys.modules.get("fabfile"), "__file__", None)  # `fab` is loading it
    if start is None and fabfile:
        folder = Path(fabfile).resolve().parent
        return folder.parent if folder.name == "fabfile" else folder
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if any((candidate / "config").glob("*.env")):
            return candidate
    return here


def cache_dir() -> Path | None:
    """FABDEPLOY_CACHE_DIR, absolute: where the wheelhouses and test venvs are kept, shared by
    every checkout that names it (None: each project's ``.fabdeploy``)."""
    explicit = os.environ.get("FABDEPLOY_CACHE_DIR", "").strip()
    return Path(explicit).expanduser().resolve() if explicit else None


def environments(config_dir: Path) -> list[str]:
    """The deploy targets in ``config_dir``: one per ``<name>.env``, documentation excluded."""
    if not config_dir.is_dir():
        return []
    names = (path.stem for path in config_dir.glob("*.env"))
    return sorted(name for name in names if name not in NOT_ENVIRONMENTS and NAME.match(name))


def state(c: Context) -> Any:
    """fabdeploy's part of the invoke config (``fabdeploy.*``), made when a collection of the
    user's own lacks it: the chosen environment, the project dir, hooks."""
    if "fabdeploy" not in c.config:
        c.config["fabdeploy"] = {}
    return c.config["fabdeploy"]


def project_dir(c: Context) -> Path:
    """The project whose ``config/`` is read: set by the namespace, else found from the cwd."""
    configured = state(c).get("project_dir")
    if configured:
        return Path(configured)
    prefix = fabfile_location(c)
    if prefix and any((Path(prefix) / "config").glob("*.env")):
        return Path(prefix)
    return find_project_dir()


def fabfile_location(c: Context) -> str | None:
    """Where ``fab`` found the fabfile (its directory, or ``fab -r DIR``), None outside fab.

    invoke keeps it only as the config's private ``_project_prefix`` (set by the public
    `Config.set_project_location`, with no public getter: checked in invoke 2.2.1); this is
    the one place fabdeploy reads it.
    """
    return getattr(c.config, "_project_prefix", None)


def selected_environment(c: Context) -> str:
    """The environment named on the command line (``fab staging ...``), else the default."""
    chosen = state(c).get("environment")
    return chosen or os.environ.get("FABDEPLOY_ENVIRONMENT") or DEFAULT_ENVIRONMENT


def fab_command(settings: Settings, task: str) -> str:
    """The ``fab`` command line that runs ``task`` against this environment (for messages)."""
    word = "" if settings.environment == DEFAULT_ENVIRONMENT else f"{settings.environment} "
    return f"fab {word}{task}"
