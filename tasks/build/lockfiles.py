"""What the app's packages are resolved from: a lock file, or a requirements file.

REQUIREMENTS names the file (APP_DIR-relative); empty (the default), the first of `DETECTED`
that APP_DIR holds (``uv.lock`` with its ``pyproject.toml``, ``poetry.lock``, ``pdm.lock``,
``requirements.txt``). `read(settings)` turns it into a `Source`: its kind, every file it read
(the identity: what the packages are resolved from), and the requirements text the wheelhouse
is made of, flat with markers kept (the same ``pip wheel`` / ``pip download`` per tag set,
with each host's marker values, then serves every kind):

- a requirements file: its own text (its ``-r``/``-c`` includes followed by `reqfiles`);
- ``uv.lock``: ``uv export --locked --no-dev --no-emit-project --no-hashes`` (uv is a
  dependency of fabdeploy's: `pip.uv_binary`); a lock stale against pyproject.toml is refused
  naming uv.lock and ``uv lock``, before any host changes;
- ``poetry.lock`` / ``pdm.lock``: the tool's own export (``poetry export``, ``pdm export``)
  when it is installed where fab runs; otherwise an error naming the lock, the tool and the
  ways out.

The lock's hashes are checked against the wheels fetched for each tag set (`verify`): a
downloaded wheel of a locked ``name==version`` whose sha256 the lock does not list stops the
build. The server (`workers.server_packages`: gunicorn, the worker class's package) is added,
at its documented version, when the resolved set does not name it (`Source.added`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, FabdeployError
from . import pip, reqfiles, workers
from .wheels import parse_toml

if TYPE_CHECKING:
    from ..config import Settings


#: What an empty REQUIREMENTS looks for in APP_DIR, in this order.
DETECTED = ("uv.lock", "poetry.lock", "pdm.lock", "requirements.txt")


#: A lock file's name -> its tool.
LOCKS = {"uv.lock": "uv", "poetry.lock": "poetry", "pdm.lock": "pdm"}


#: Each lock tool's export to requirements text, without hashes (the lock's hashes are
#: checked against the wheels instead: `verify`); `MAIN` then keeps the app's own packages.
EXPORTS = {
    "uv": (
        "export",
        "--locked",
        "--no-emit-project",
        "--no-hashes",
        "--no-header",
        "--no-annotate",
        "-q",
    ),
    "poetry": ("export", "--format", "requirements.txt", "--without-hashes", "--only", "main"),
    "pdm": ("export", "--format", "requirements", "--without-hashes", "--prod"),
}


#: The arguments that leave the dev group out (uv's are added per export: a group is asked
#: with ``--only-group`` instead).
MAIN = {"uv": ("--no-dev",), "poetry": (), "pdm": ()}


#: How each tool makes its lock file again (named when the lock is stale).
RELOCK = {"uv": "uv lock", "poetry": "poetry lock", "pdm": "pdm lock"}


#: What a lock tool needs besides itself, for its export (named when it is missing).
INSTALL = {
    "poetry": "pip install poetry poetry-plugin-export",
    "pdm": "pip install pdm",
}


#: The comment above the packages fabdeploy adds to the app's.
ADDED_COMMENT = "# added by fabdeploy: the server the app does not list (docs/upload.md#the-server)"


@dataclass(frozen=True)
class Source:
    """Where the app's packages come from: ``kind`` (``uv``, ``poetry``, ``pdm`` or
    ``requirements``), the APP_DIR-relative ``file``, the requirements ``text`` (flat for a
    lock, the file's own text for a requirements file), every file read (path, text), the
    server packages added, and the lock's sha256 hashes per ``name==version``."""

    kind: str
    file: str
    text: str
    files: tuple[tuple[str, str], ...]
    added: tuple[str, ...] = ()
    hashes: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def lock(self) -> bool:
        """Whether the packages come from a lock file."""
        return self.kind in LOCKS.values()

    @property
    def wanted(self) -> str:
        """What the wheelhouse is made of: the text, then the added server packages."""
        if not self.added:
            return self.text
        text = self.text if self.text.endswith("\n") or not self.text else self.text + "\n"
        return text + ADDED_COMMENT + "\n" + "".join(f"{line}\n" for line in self.added)

    @property
    def identity(self) -> str:
        """Every file read (path and text) and the packages added: what a host resolving
        for itself (HOST_PACKAGE_INDEX) installs from."""
        return "\0".join([*(f"{path}\n{text}" for path, text in self.files), *self.added])

    @property
    def included(self) -> tuple[str, ...]:
        """The other files read (a requirements file's includes, a lock's pyproject.toml)."""
        return tuple(path for path, _ in self.files[1:])

    def for_hosts(self) -> str:
        """The requirements text a host installs from an index itself (HOST_PACKAGE_INDEX);
        "" when that is the release's own requirements file as it is."""
        if not self.lock and not self.added:
            return ""
        if not self.lock:
            return f"-r {self.file}\n" + self.wanted[len(self.text) :]
        return self.wanted


def detect(settings: Settings, required: bool = True) -> str:
    """The file the packages come from, APP_DIR-relative: REQUIREMENTS, else the first of
    `DETECTED` in APP_DIR; none: a `ConfigError` naming APP_DIR and the files looked for
    (``required``), or ""."""
    if settings.requirements:
        return settings.requirements
    app_dir = settings.app_dir
    for name in DETECTED:
        if (app_dir / name).is_file() and (name != "uv.lock" or (app_dir / "pyproject.toml").is_file()):  # fmt: skip
            return name
    if not required:
        return ""
    raise ConfigError(
        f"{settings.where('REQUIREMENTS')}: APP_DIR {app_dir} has none of uv.lock (with "
        "pyproject.toml), poetry.lock, pdm.lock, requirements.txt: add one, or set "
        "REQUIREMENTS to the requirements or lock file the app's packages come from"
    )


def kind_of(name: str) -> str:
    """The kind of the file ``name``: its lock tool, else ``requirements``."""
    return LOCKS.get(Path(name).name, "requirements")


def read(settings: Settings) -> Source:
    """The app's packages' source (the module doc says how each kind is read); a problem is
    one error naming the file (and the key's file:line when REQUIREMENTS named it)."""
    name = detect(settings)
    path = settings.app_dir / name
    where = settings.where("REQUIREMENTS") + ": " if settings.requirements else ""
    if not path.is_file() or not path.read_text(encoding="utf-8", errors="replace").strip():
        state = "is empty" if path.is_file() else "not found"
        raise ConfigError(f"{where}{path} {state}")
    kind = kind_of(name)
    if kind == "requirements":
        found = reqfiles.walk(settings.app_dir, name)
        text = found.files[0][1]
        names = reqfiles.names_of("\n".join(body for _, body in found.files))
        return Source(kind, name, text, found.files, workers.server_packages(settings, names))
    if Path(name).parent != Path("."):
        raise ConfigError(f"{where}{name}: a lock file must be at the top of APP_DIR, beside its pyproject.toml")  # fmt: skip
    lock_text = path.read_text(encoding="utf-8")
    files = [(name, lock_text)]
    if (settings.app_dir / "pyproject.toml").is_file():
        files.append(("pyproject.toml", (settings.app_dir / "pyproject.toml").read_text(encoding="utf-8")))  # fmt: skip
    text = export(settings, kind, path, *MAIN[kind])
    added = workers.server_packages(settings, reqfiles.names_of(text))
    return Source(kind, name, text, tuple(files), added, lock_hashes(path, lock_text))


def tool(kind: str) -> str | None:
    """The lock tool's executable: uv from fabdeploy's dependency, the others beside fab's
    Python or on PATH; None when missing."""
    if kind == "uv":
        return pip.uv_binary() or shutil.which("uv")
    beside = Path(sys.executable).with_name(kind)
    return str(beside) if beside.is_file() else shutil.which(kind)


def export(settings: Settings, kind: str, path: Path, *args: str) -> str:
    """The lock at ``path`` exported by its tool as requirements text (`EXPORTS`, then
    ``args``); a missing tool, a stale lock or a failed export is one error naming the lock."""
    program = tool(kind)
    if program is None:
        raise FabdeployError(
            f"{path}: the packages come from this {kind} lock, and `{kind}` is not installed "
            f"where fab runs, so it cannot be exported: install it ({INSTALL.get(kind, kind)}), "
            "or set REQUIREMENTS= to a requirements file of the app's packages"
        )
    command = [program, *EXPORTS[kind], *args]
    env = {**os.environ, "VIRTUAL_ENV": ""} if kind == "uv" else None  # not fab's own venv
    result = subprocess.run(
        command, cwd=path.parent, capture_output=True, text=True, check=False, env=env
    )
    if result.returncode == 0:
        return result.stdout
    said = stale(kind, (result.stderr or result.stdout).strip())
    if said:
        raise FabdeployError(
            f"{path} is out of date with {path.parent / 'pyproject.toml'}: run `{RELOCK[kind]}` "
            f"in {path.parent}{off_path(kind, program)} and commit the lock ({kind} says: {said})"
        )
    raise FabdeployError(f"{path}: `{' '.join(command[1:3])}` failed:\n{pip.tail(result)}")


def off_path(kind: str, program: str) -> str:
    """What to run instead of the bare tool name when ``kind`` is not on PATH (fab run as
    ``.venv/bin/fab``, uv only fabdeploy's dependency): `` (`uv` is not on PATH: ...)``."""
    if shutil.which(kind):
        return ""
    return f" (`{kind}` is not on PATH; the one fab used is {program}: `{program} lock`)"


def stale(kind: str, said: str) -> str:
    """The line of the tool's error saying the lock is out of date with pyproject.toml ("":
    another error)."""
    markers = {
        "uv": ("needs to be updated",),
        "poetry": (
            "pyproject.toml changed significantly",
            "not consistent with",
            "Run `poetry lock",
        ),
        "pdm": ("lock file is not up to date", "Lockfile hash doesn't match", "not up to date"),
    }
    lines = [line.strip() for line in said.splitlines()]
    return next((line for line in lines if any(m in line for m in markers[kind])), "")


def lock_hashes(path: Path, text: str) -> dict[str, frozenset[str]]:
    """``name==version`` -> the sha256 hashes a lock lists for its files (uv: ``sdist`` and
    ``wheels``; poetry and pdm: ``files``); names normalized."""
    try:
        data = parse_toml(text)
    except ValueError as exc:
        raise FabdeployError(f"{path} is not valid TOML: {exc}") from None
    found: dict[str, frozenset[str]] = {}
    for package in data.get("package", []):
        entries = [package.get("sdist") or {}, *package.get("wheels", []), *package.get("files", [])]  # fmt: skip
        digests = {
            str(item["hash"]).split(":", 1)[1]
            for item in entries
            if isinstance(item, dict) and str(item.get("hash", "")).startswith("sha256:")
        }
        if digests and "name" in package and "version" in package:
            found[f"{reqfiles.normalize(package['name'])}=={package['version']}"] = frozenset(digests)  # fmt: skip
    return found


def top(settings: Settings) -> str:
    """The file the packages come from (`detect`), or ``requirements.txt`` when APP_DIR has
    none yet: the name a requirements text is read as (its includes relative to it)."""
    return detect(settings, required=False) or DETECTED[-1]


def locked_hashes(settings: Settings) -> tuple[str, Mapping[str, frozenset[str]]]:
    """The lock file and its hashes (`lock_hashes`); ("", {}) for a requirements file."""
    name = detect(settings, required=False)
    if kind_of(name) == "requirements" or not (settings.app_dir / name).is_file():
        return "", {}
    path = settings.app_dir / name
    return name, lock_hashes(path, path.read_text(encoding="utf-8"))


def verify(settings: Settings, folder: Path, built: set[str]) -> None:
    """Every wheel in ``folder`` of a ``name==version`` the lock lists must have one of its
    hashes, unless it was ``built`` here or on a host (from an sdist the index served)."""
    name, hashes = locked_hashes(settings)
    for wheel in sorted(folder.glob("*.whl")):
        project, version = wheel.name.split("-")[:2]
        listed = hashes.get(f"{reqfiles.normalize(project)}=={version}")
        if listed is None or wheel.name in built:
            continue
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest not in listed:
            raise FabdeployError(
                f"{wheel.name}: its sha256 {digest} is not one {name} lists for {project} "
                f"{version}: the index served another file than the one locked (check "
                f"PACKAGE_INDEX, or run `{RELOCK[kind_of(name)]}` if the lock is wrong)"
            )


def test_requirements(settings: Settings, group: str, extra: bool) -> str | None:
    """A uv lock's dependency ``group`` (or ``extra``) exported, pinned as locked; None when
    the packages do not come from uv.lock."""
    name = detect(settings, required=False)
    if kind_of(name) != "uv":
        return None
    args = ("--extra", group) if extra else ("--only-group", group)
    return export(settings, "uv", settings.app_dir / name, *args)
