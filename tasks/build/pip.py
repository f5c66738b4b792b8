"""Running pip on the deploying machine: one command shape, from PACKAGE_INDEX when set, with
a host's environment markers when resolving for a host (``scripts/pip_for_host.py``); and
installing a local wheelhouse into a plain directory, with uv when it is installed (offline:
what uv resolves is the wheelhouse's pinned set, the same as pip's, ten times faster)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Settings


#: Runs pip with another Python's environment-marker values.
FOR_HOST = Path(__file__).resolve().parent.parent / "scripts" / "pip_for_host.py"


def command(settings: Settings, *args: str, markers: Mapping[str, str] | None = None) -> list[str]:
    """``python -m pip`` with ``args``, resolving from PACKAGE_INDEX when it is set; with
    ``markers`` (a host's), requirement markers are evaluated with those values."""
    index = ["--index-url", settings.package_index] if settings.package_index else []
    pip = [sys.executable, str(FOR_HOST), json.dumps(dict(markers))] if markers else [
        sys.executable, "-m", "pip"
    ]  # fmt: skip
    return [*pip, "--disable-pip-version-check", "--no-input", *args, *index]


def uv_binary() -> str | None:
    """The ``uv`` executable of the ``uv`` package fab's Python has, or None (pip is used)."""
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        return None


def target_install(wheels: Path, target: Path, requirements: Path) -> list[str]:
    """Install ``requirements`` from the wheelhouse ``wheels`` only (no index) into the plain
    directory ``target``, for fab's own Python, compiling nothing: uv, else pip."""
    uv = uv_binary()
    if uv is not None:  # files copied, not hard-linked from uv's cache (bin/ is edited after)
        return [
            uv, "pip", "install", "-q", "--python", sys.executable, "--no-index", "--find-links",
            str(wheels), "--target", str(target), "--link-mode", "copy", "-r", str(requirements),
        ]  # fmt: skip
    return [
        sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "install",
        "-q", "--no-index", "--find-links", str(wheels), "--target", str(target), "--no-compile",
        "--no-warn-script-location", "-r", str(requirements),
    ]  # fmt: skip


def run_in_app_dir(settings: Settings, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a pip command in APP_DIR (relative paths in REQUIREMENTS resolve there)."""
    return subprocess.run(argv, cwd=settings.app_dir, capture_output=True, text=True, check=False)


def tail(result: subprocess.CompletedProcess[str]) -> str:
    """The last lines pip printed, for an error message."""
    return "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
