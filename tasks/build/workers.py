"""The server the app runs under: gunicorn and its worker class's package, added when the
app does not list them, and whether a build provides a worker class.

`server_packages(settings, names)`: the pins added to the app's packages (`lockfiles`) for
what the resolved set does not name: `GUNICORN`, and for a known WORKER_CLASS its package
(`WORKER_PACKAGES`), each at its documented version; a pin the app makes always wins.
`require_worker_class(settings, wheels)` runs once per deploy, locally, right after the
wheelhouse is built: a custom ``WORKER_CLASS`` whose top-level module no wheel contains is
refused with the env file's line, before anything is shipped to a host.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from ..config import Settings


#: gunicorn's own worker classes and the package each needs besides gunicorn.
BUILTIN_NEEDS = {
    "sync": None,
    "gthread": None,
    "eventlet": "eventlet",
    "gevent": "gevent",
    "tornado": "tornado",
}


#: The server, added at this version when the app's packages do not name it (docs/upload.md).
GUNICORN = ("gunicorn", "27.0.1")


#: A worker class's top-level module -> its package and the version added when the app's
#: packages do not name it (docs/upload.md#the-server).
WORKER_PACKAGES = {
    "uvicorn_worker": ("uvicorn-worker", "0.4.0"),
    "gevent": ("gevent", "26.9.0"),
    "eventlet": ("eventlet", "0.41.3"),
    "tornado": ("tornado", "6.6.1"),
}


def server_packages(settings: Settings, names: set[str]) -> tuple[str, ...]:
    """``name==version`` of the server packages missing from ``names`` (the normalized
    project names the app's packages list): gunicorn, then WORKER_CLASS's package."""
    wanted = [GUNICORN]
    module = needed_module(settings.worker_class)
    if module in WORKER_PACKAGES:
        wanted.append(WORKER_PACKAGES[module])
    return tuple(f"{name}=={version}" for name, version in wanted if name not in names)


def needed_module(worker_class: str) -> str | None:
    """The top-level module ``worker_class`` is imported from (``None``: gunicorn's own)."""
    if worker_class in BUILTIN_NEEDS:
        return BUILTIN_NEEDS[worker_class]
    return worker_class.split(".", 1)[0]


def top_level_modules(wheels: Iterable[Path]) -> set[str]:
    """Every top-level module or package the ``wheels`` install."""
    found: set[str] = set()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                first = name.split("/", 1)[0]
                if first.endswith((".dist-info", ".data")):
                    continue
                found.add(first[:-3] if first.endswith(".py") else first)
    return found


def require_worker_class(settings: Settings, wheels: Path) -> None:
    """Refuse a WORKER_CLASS that none of the wheels in ``wheels`` provides."""
    module = needed_module(settings.worker_class)
    if module is None or module in top_level_modules(sorted(wheels.glob("*.whl"))):
        return
    raise ConfigError(
        f"{settings.where('WORKER_CLASS')}: {settings.worker_class} needs the "
        f"module {module!r}, which no package of the app's installs: add the package that "
        "provides it to the app's requirements (or its pyproject.toml, and lock it)"
    )
