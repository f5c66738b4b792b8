"""Running pip on the deploying machine: one command shape, from PACKAGE_INDEX when set."""

from __future__ import annotations

import subprocess
import sys

from .config import Settings


def command(settings: Settings, *args: str) -> list[str]:
    """``python -m pip`` with ``args``, resolving from PACKAGE_INDEX when it is set."""
    index = ["--index-url", settings.package_index] if settings.package_index else []
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args, *index]


def run(settings: Settings, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a pip command in APP_DIR (relative paths in REQUIREMENTS resolve there)."""
    return subprocess.run(argv, cwd=settings.app_dir, capture_output=True, text=True, check=False)


def tail(result: subprocess.CompletedProcess[str]) -> str:
    """The last lines pip printed, for an error message."""
    return "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
