"""The app's Python requirement, checked against the Pythons that will run it.

The requirement is PYTHON_REQUIRES (a PEP 440 specifier such as ``>=3.12``) when the
environment file sets it, else ``requires-python`` of ``[project]`` in APP_DIR's
pyproject.toml; neither: nothing is checked. `find(settings)` reads it (an invalid one is an
error naming its file); `problem` says, in one line naming the host, its Python, the
requirement and where it comes from, why a Python does not satisfy it.

It is checked against each host's Python (`tasks.host.facts.Facts`, learned in ``fab check``, ``fab
plan``, a deploy's ``check`` step and ``fab setup``) and against the local Python that runs
the test step, before any host changes: an app needing a newer Python fails there, not with
pip's "No matching distribution" or at smoke time.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..core.errors import FabdeployError, HostError
from .wheels import parse_toml

if TYPE_CHECKING:
    from ..config import Settings


#: The app's own file that may state the requirement.
PYPROJECT = "pyproject.toml"


@dataclass(frozen=True)
class PythonRequirement:
    """A PEP 440 specifier and where it comes from (the key's line, or pyproject.toml)."""

    specifier: SpecifierSet
    source: str  # "requires-python in app/pyproject.toml" or "PYTHON_REQUIRES in <file>:<line>"

    def allows(self, version: str) -> bool:
        """Whether Python ``version`` (3.11.2, 3.14.0rc1) satisfies it."""
        try:
            return self.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            return False

    def describe(self) -> str:
        """``"<specifier>" (<source>)``, for messages."""
        return f'"{self.specifier}" ({self.source})'


def shown(settings: Settings, path: Path) -> str:
    """``path`` relative to the project when it lies inside it, for messages."""
    try:
        return path.relative_to(settings.project_dir).as_posix()
    except ValueError:
        return str(path)


def from_pyproject(settings: Settings) -> PythonRequirement | None:
    """``requires-python`` of APP_DIR's pyproject.toml (None without one)."""
    path = settings.app_dir / PYPROJECT
    if not path.is_file():
        return None
    where = shown(settings, path)
    try:
        data = parse_toml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FabdeployError(f"{where}: cannot read it for requires-python: {exc}") from None
    project = data.get("project")
    text = project.get("requires-python") if isinstance(project, dict) else None
    if text is None:
        return None
    try:
        return PythonRequirement(SpecifierSet(str(text)), f"requires-python in {where}")
    except InvalidSpecifier:
        raise FabdeployError(
            f"{where}: requires-python {text!r} is not a PEP 440 specifier (such as >=3.11); "
            "fix it, or set PYTHON_REQUIRES, which wins over it"
        ) from None


def find(settings: Settings) -> PythonRequirement | None:
    """The app's Python requirement: PYTHON_REQUIRES, else pyproject.toml's; None: neither."""
    if settings.python_requires:
        where = settings.where("PYTHON_REQUIRES").rsplit(": ", 1)[0]
        return PythonRequirement(
            SpecifierSet(settings.python_requires), f"PYTHON_REQUIRES in {where}"
        )
    return from_pyproject(settings)


def version_of(identity: str) -> str:
    """The version in a Python's identity (``Python 3.11.2 (main, ...) ...`` -> 3.11.2)."""
    words = identity.split()
    return words[1] if len(words) > 1 and words[0] == "Python" else identity


def problem(found: PythonRequirement, who: str, version: str, fix: str) -> str:
    """The line saying that ``who``'s Python ``version`` does not satisfy ``found`` ("" when
    it does); ``fix`` says what to do."""
    if found.allows(version):
        return ""
    return (
        f"{who} is Python {version}, which does not satisfy the app's Python requirement "
        f"{found.describe()}: {fix}"
    )


def host_fix(settings: Settings) -> str:
    """What to do about a host whose Python does not satisfy the requirement."""
    return (
        f"install a Python that does on the host and set PYTHON to it (PYTHON={settings.python} "
        "now), or change the requirement"
    )


def check_host(settings: Settings, identity: str) -> str:
    """The one line saying why a host's Python (its ``python -VV`` identity) does not
    satisfy the requirement (its host prefixes it); "" when it does. A bad one raises."""
    found = find(settings)
    if found is None:
        return ""
    return problem(found, f"PYTHON {settings.python}", version_of(identity), host_fix(settings))


def require_host(settings: Settings, host: str, identity: str) -> None:
    """`check_host`, raised as a `HostError` of ``host``."""
    line = check_host(settings, identity)
    if line:
        raise HostError(host, line)


def local_version() -> str:
    """The version of the Python that runs fab (and the test step)."""
    return platform.python_version()


def check_local(settings: Settings) -> str:
    """The one line saying why the local Python that runs the test step does not satisfy
    the requirement; "" when it does, or when no test step runs (TEST_COMMAND empty)."""
    found = find(settings)
    if found is None or not settings.test_command.strip():
        return ""
    fix = (
        "run fab from a Python that does (the test step runs TEST_COMMAND with it), or deploy "
        "with --skip-tests"
    )
    return problem(found, "the local Python that runs the test step", local_version(), fix)


def require_local(settings: Settings) -> None:
    """`check_local`, raised."""
    line = check_local(settings)
    if line:
        raise FabdeployError(line)


def describe(settings: Settings) -> str:
    """The requirement and its source for ``fab check`` ("none" without one)."""
    found = find(settings)
    if found is None:
        return f"none (no PYTHON_REQUIRES, no requires-python in APP_DIR's {PYPROJECT})"
    return found.describe()
