"""Which package a gunicorn worker class comes from, and whether a build provides it.

`require_worker_class(settings, wheels)` runs once per deploy, locally, right after the wheelhouse is built:
a ``WORKER_CLASS`` whose top-level module no wheel of the requirements contains is refused
with the env file's line, before anything is shipped to a host.
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
        f"module {module!r}, which no package of {settings.requirements} installs: add its "
        "package (for uvicorn_worker.UvicornWorker: uvicorn-worker) to the requirements"
    )
