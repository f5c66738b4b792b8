"""The test step's own environment: a local venv of the app's requirements plus its test
requirements, and the command that runs the suite in it.

- `find(settings)`: the test requirements. TEST_REQUIREMENTS (a file in APP_DIR) when set;
  else APP_DIR's ``pyproject.toml``: the first of the `GROUPS` in ``[dependency-groups]``
  (PEP 735, ``include-group`` followed), then in ``[project.optional-dependencies]``; else
  the first of `FILES` in APP_DIR; else none.
- `choose(settings, found)`: the command. TEST_COMMAND when the env file sets it; unset, a
  Django project (``manage.py`` in APP_DIR) with no pytest configuration and no pytest
  requirement gets ``python manage.py test``, any other ``python -m pytest -q``.
- `venv(settings, found, extra, say)`: ``.fabdeploy/test-venvs/<key>``, keyed by the app's
  wheelhouse (its requirements, this machine's wheel tags, PACKAGE_INDEX), the test
  requirements (``-r``/``-c`` includes followed) and the Python; reused while they stay the
  same. Made with ``python -m venv --without-pip`` from the Python that runs fab: first the
  app's packages, installed once from the local wheelhouse the build uses
  (`packages.prebuilt`: exactly what the hosts of this Python get), copied in; then fab's
  pip (``pip --python``) adds the test requirements from PACKAGE_INDEX (or pip's default),
  the app's versions held by constraints.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import paths
from ..core.errors import FabdeployError
from ..core.local import exclusive
from ..core.paths import VENV_MARKER
from . import lockfiles, packages, pip, pyreq, reqfiles, tags
from .reqfiles import names_of
from .wheels import direct_references, parse_toml

if TYPE_CHECKING:
    from ..config import Settings


#: The dependency groups and extras of pyproject.toml read as test requirements, in order.
GROUPS = ("test", "tests", "dev")


#: Requirements files in APP_DIR read as test requirements, in order (TEST_REQUIREMENTS empty).
FILES = (
    "requirements-test.txt",
    "requirements-dev.txt",
    "test-requirements.txt",
    "dev-requirements.txt",
    "requirements/test.txt",
    "requirements/dev.txt",
)


#: How many test venvs (`LocalState.test_venvs`) are kept, the newest.
KEEP = 3


#: Seconds since its last use before a test venv beyond the KEEP newest is removed.
IDLE = 24 * 3600


#: The default command, and the one for a Django project without pytest.
PYTEST = "python -m pytest -q"


DJANGO = "python manage.py test"


@dataclass(frozen=True)
class TestRequirements:
    """The app's test requirements: where they come from and their text (pip's format)."""

    source: str = ""  # "requirements-test.txt", "pyproject.toml [dependency-groups] dev"; "" none
    text: str = ""  # every line, includes followed (for the key and the names)
    file: Path | None = None  # the file pip installs (None: `text` is written for pip)

    def names(self) -> set[str]:
        """The normalized project names the requirements list."""
        return names_of(self.text)


def read_requirements(app_dir: Path, relative: str) -> str:
    """A requirements file's text and every file it includes, joined (`reqfiles.walk`: the
    same walk as the build's, errors naming the file and line)."""
    return "\n".join(body for _, body in reqfiles.walk(app_dir, relative).files) + "\n"


def group(table: dict, name: str, seen: tuple[str, ...] = ()) -> list[str]:  # type: ignore[type-arg]
    """A PEP 735 dependency group's requirements, ``{include-group = ...}`` followed."""
    found: list[str] = []
    for item in table.get(name, []):
        if isinstance(item, dict) and "include-group" in item:
            included = str(item["include-group"])
            if included not in seen:
                found += group(table, included, (*seen, name))
        elif isinstance(item, str):
            found.append(item)
    return found


def from_pyproject(app_dir: Path) -> TestRequirements | None:
    """The first of `GROUPS` in pyproject.toml's dependency groups, then its extras."""
    path = app_dir / "pyproject.toml"
    if not path.is_file():
        return None
    try:
        data = parse_toml(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise FabdeployError(f"test step: {path} is not valid TOML: {exc}") from None
    groups = data.get("dependency-groups") or {}
    extras = (data.get("project") or {}).get("optional-dependencies") or {}
    for name in GROUPS:
        if name in groups:
            return TestRequirements(f"pyproject.toml [dependency-groups] {name}", lines(group(groups, name)))  # fmt: skip
    for name in GROUPS:
        if name in extras:
            return TestRequirements(f"pyproject.toml [project.optional-dependencies] {name}", lines(extras[name]))  # fmt: skip
    return None


def from_lock(settings: Settings, found: TestRequirements | None) -> TestRequirements | None:
    """``found`` (a group or extra of pyproject.toml) as uv.lock pins it, when the app's
    packages come from uv.lock: the test venv holds the locked versions, not the newest."""
    if found is None or not found.source.startswith("pyproject.toml"):
        return found
    name, extra = found.source.rsplit(" ", 1)[1], "optional-dependencies" in found.source
    text = lockfiles.test_requirements(settings, name, extra)
    if text is None:
        return found
    return TestRequirements(f"{found.source}, locked in uv.lock", text)


def lines(requirements: list[str]) -> str:
    """Requirement strings as a requirements file's text."""
    return "".join(f"{line}\n" for line in requirements)


def find(settings: Settings) -> TestRequirements:
    """The app's test requirements (the module doc says where they are looked for)."""
    app_dir = settings.app_dir
    if settings.test_requirements:
        path = app_dir / settings.test_requirements
        if not path.is_file():
            raise FabdeployError(
                f"test step: {settings.where('TEST_REQUIREMENTS')}: {path} not found"
            )
        return TestRequirements(
            settings.test_requirements, read_requirements(app_dir, settings.test_requirements), path
        )
    found = from_lock(settings, from_pyproject(app_dir))
    if found is not None:
        return found
    for name in FILES:
        if (app_dir / name).is_file():
            return TestRequirements(name, read_requirements(app_dir, name), app_dir / name)
    return TestRequirements()


def app_requirements(settings: Settings) -> str:
    """What the app's packages are resolved from, as requirements text: a requirements file
    and its includes, a lock's export ("" when APP_DIR has neither)."""
    name = lockfiles.detect(settings, required=False)
    if not name or not (settings.app_dir / name).is_file():
        return ""
    if lockfiles.kind_of(name) == "requirements":
        return read_requirements(settings.app_dir, name)
    return lockfiles.read(settings).wanted


def pytest_configured(app_dir: Path) -> bool:
    """Whether APP_DIR configures pytest (pytest.ini, conftest.py, [tool.pytest...] in
    pyproject.toml, [tool:pytest] in setup.cfg, [pytest] in tox.ini)."""
    if (app_dir / "pytest.ini").is_file() or (app_dir / "conftest.py").is_file():
        return True
    for name, marker in (
        ("pyproject.toml", "[tool.pytest"),
        ("setup.cfg", "[tool:pytest]"),
        ("tox.ini", "[pytest]"),
    ):
        path = app_dir / name
        if path.is_file() and marker in path.read_text(encoding="utf-8", errors="replace"):
            return True
    return False


def choose(settings: Settings, found: TestRequirements) -> tuple[str, str]:
    """The test command and why it is that one (TEST_COMMAND set, or what was detected)."""
    if "TEST_COMMAND" in settings.lines:
        return (
            settings.test_command.strip(),
            f"TEST_COMMAND in {settings.file_of('TEST_COMMAND').name}",
        )
    names = found.names() | names_of(app_requirements(settings))
    if (settings.app_dir / "manage.py").is_file():
        if not pytest_configured(settings.app_dir) and not any(
            n.startswith("pytest") for n in names
        ):
            return DJANGO, "detected: manage.py, and no pytest configuration or requirement"
        return PYTEST, "detected: manage.py, with pytest configured or required"
    return PYTEST, "the default"


def needs_pytest(command: str, found: TestRequirements, settings: Settings) -> bool:
    """Whether ``command`` runs pytest that neither the app's nor its test requirements name."""
    if not re.search(r"\bpytest\b", command):
        return False
    return "pytest" not in found.names() | names_of(app_requirements(settings))


def python_identity() -> str:
    """The Python the venv is made from: its real path and full version."""
    return f"{os.path.realpath(sys.executable)} {sys.version}"


def venv_key(wheels: Path | None, found: TestRequirements, extra: tuple[str, ...], settings: Settings) -> str:  # fmt: skip
    """The test venv's key: the app's wheelhouse, the test requirements, the Python, the index
    (and the project, when a test requirement is a path or URL: never shared)."""
    parts = [wheels.name if wheels else "", found.text, *extra, python_identity(), settings.package_index]  # fmt: skip
    if direct_references(found.text):
        parts.append(str(settings.app_dir))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def wheelhouse(settings: Settings, say: Callable[[str], None]) -> Path | None:
    """The app's wheelhouse for this machine's Python (cached, shared with the build: the
    same key, so the same text as the build reads it, `lockfiles.Source.wanted`); None when
    APP_DIR has no lock or requirements file."""
    name = lockfiles.detect(settings, required=False)
    path = settings.app_dir / name
    if not name or not path.is_file() or not path.read_text(encoding="utf-8").strip():
        return None
    text = lockfiles.read(settings).wanted
    local = tags.local()
    return packages.wheelhouse(settings, text, local, local, (), say)


def constraints(wheels: Path) -> str:
    """``name==version`` of every wheel in the wheelhouse: the app's versions, held."""
    rows = [packages.wheel_label(w)[:2] for w in packages.check_wheels(wheels, tags.local())]
    return "".join(f"{name}=={version}\n" for name, version in rows)


def copy_prebuilt(site: Path, where: Path) -> None:
    """The app's packages, installed once from the wheelhouse (`packages.prebuilt`, shared
    with the build), copied into the venv at ``where``; their scripts' ``#!python`` shebangs
    name the venv's Python (as a host does with them)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    target = where / "lib" / version / "site-packages"
    for item in site.iterdir():
        if item.name in (VENV_MARKER, "bin"):
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target / item.name)
    for script in sorted((site / "bin").iterdir()) if (site / "bin").is_dir() else []:
        data = script.read_bytes()
        if data.startswith(packages.PLACEHOLDER_SHEBANG):
            data = (
                f"#!{where / 'bin' / 'python'}\n".encode()
                + data[len(packages.PLACEHOLDER_SHEBANG) :]
            )
        (where / "bin" / script.name).write_bytes(data)
        (where / "bin" / script.name).chmod(0o755)


def pip_install(settings: Settings, python: Path, args: list[str], what: str) -> None:
    """fab's pip installs into the venv of ``python``; a failure names the test step."""
    command = pip.command(settings, "--python", str(python), "install", "-q", *args)
    result = pip.run_in_app_dir(settings, command)
    if result.returncode != 0 and "--python" in result.stderr and "no such option" in result.stderr:
        raise FabdeployError(
            "test step: fab's pip has no --python option (pip 22.3 or later has): upgrade pip "
            "where fab runs, or set TEST_VENV=no"
        )
    if result.returncode != 0:
        raise FabdeployError(f"test step: installing {what} into its venv failed:\n{pip.tail(result)}")  # fmt: skip


def fill(settings: Settings, where: Path, wheels: Path | None, found: TestRequirements, extra: tuple[str, ...]) -> None:  # fmt: skip
    """Make the venv at ``where``: the app's packages offline, then the test requirements."""
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        raise FabdeployError(f"test step: making its venv {where} failed:\n{pip.tail(made)}")
    python = where / "bin" / "python"
    links: list[str] = []
    if wheels is not None:
        copy_prebuilt(packages.prebuilt(settings, wheels, lambda line: None), where)
        (where / "constraints.txt").write_text(constraints(wheels))
        links = ["--find-links", str(wheels), "-c", str(where / "constraints.txt")]
    if found.text.strip() or extra:
        listed = found.file
        if listed is None and found.text.strip():
            listed = where / "test-requirements.txt"
            listed.write_text(found.text)
        args = [*links, *(["-r", str(listed)] if listed else []), *extra]
        pip_install(settings, python, args, f"the test requirements ({found.source or ', '.join(extra)})")  # fmt: skip


def made(settings: Settings, where: Path, wheels: Path | None, found: TestRequirements, extra: tuple[str, ...]) -> float:  # fmt: skip
    """Make the venv at ``where`` (`fill`), its marker last; the seconds it took."""
    shutil.rmtree(where, ignore_errors=True)  # an interrupted one: made again
    where.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        fill(settings, where, wheels, found, extra)
    except BaseException:
        shutil.rmtree(where, ignore_errors=True)
        raise
    (where / VENV_MARKER).write_text("")
    return time.monotonic() - started


def prune(folder: Path, keep: Path, shared: bool) -> None:
    """Remove the test venvs beyond the KEEP newest (``keep`` among them); in a ``shared``
    FABDEPLOY_CACHE_DIR only those no fab used in the last `IDLE` seconds (another checkout
    may be using an older one right now)."""
    venvs = sorted(
        (p for p in folder.iterdir() if p.is_dir() and p != keep and "." not in p.name),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    idle = time.time() - (IDLE if shared else 0)
    for old in venvs[KEEP - 1 :]:
        if old.stat().st_mtime <= idle:
            shutil.rmtree(old, ignore_errors=True)
            packages.lock_of(old).unlink(missing_ok=True)


def venv(settings: Settings, found: TestRequirements, extra: tuple[str, ...], say: Callable[[str], None]) -> Path:  # fmt: skip
    """The test venv (the module doc says what is in it), made or reused; made by one fab at
    a time (`local.exclusive`: a shared FABDEPLOY_CACHE_DIR)."""
    wheels = wheelhouse(settings, say)
    folder = paths.local_state(settings).test_venvs
    where = folder / venv_key(wheels, found, extra, settings)
    shown = pyreq.shown(settings, where)
    if not (where / VENV_MARKER).exists():
        with exclusive(packages.lock_of(where)):
            if not (where / VENV_MARKER).exists():
                seconds = made(settings, where, wheels, found, extra)
                prune(folder, where, settings.cache_dir is not None)
                say(f"test venv {shown}: made in {seconds:.1f}s")
                return where
    os.utime(where)
    say(f"test venv {shown}: reused")
    return where
