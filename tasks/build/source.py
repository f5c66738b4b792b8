"""The app's source: git state, the files of a release, its content revision."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.load import secrets_files
from ..core.errors import FabdeployError
from ..core.paths import LOCAL_STATE

if TYPE_CHECKING:
    from ..config import Settings


def git(app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``git -C app_dir ARGS`` and capture what it says (never raises on failure)."""
    return subprocess.run(
        ["git", "--no-optional-locks", "-C", str(app_dir), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def git_prefix(app_dir: Path) -> str | None:
    """APP_DIR's path inside its git work tree ("" at the top), or None outside git."""
    if shutil.which("git") is None:
        return None
    inside = git(app_dir, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    return git(app_dir, "rev-parse", "--show-prefix").stdout.strip()


def changed_files(app_dir: Path, old: str, new: str) -> list[str] | None:
    """The files (relative to the git root) that differ between commits ``old`` and ``new``
    of APP_DIR's work tree; None when either is not a commit git knows here."""
    if git_prefix(app_dir) is None or old.endswith("-dirty") or new.endswith("-dirty"):
        return None
    result = git(app_dir, "diff", "--name-only", "--no-renames", old, new, "--")
    return result.stdout.split() if result.returncode == 0 else None


def dirty_files(app_dir: Path, untracked_excludes: Iterable[str] = ()) -> list[str]:
    """Changed, added, deleted or untracked files under APP_DIR (relative to the git root);
    untracked ones matching ``untracked_excludes`` are left out (`--allow-dirty` would not
    ship them either: a project's own `.venv/` is no change)."""
    result = git(app_dir, "status", "--porcelain=v1", "--untracked-files=normal", "--", ".")
    if result.returncode != 0:
        raise FabdeployError(f"git status failed in {app_dir}: {result.stderr.strip()}")
    patterns = tuple(untracked_excludes)
    return [
        line[3:]
        for line in result.stdout.splitlines()
        if line.strip() and not (line.startswith("??") and excluded(line[3:].rstrip("/"), patterns))
    ]


def excluded(relative: str, patterns: Iterable[str]) -> bool:
    """Whether ``relative`` (a/b/c.py) or any of its parts matches one of ``patterns``."""
    parts = relative.split("/")
    for pattern in patterns:
        if fnmatch.fnmatch(relative, pattern):
            return True
        if any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def walk(app_dir: Path, patterns: Iterable[str]) -> list[str]:
    """Files under ``app_dir`` (relative, sorted) not matched by ``patterns``."""
    patterns = tuple(patterns)
    found = []
    for top, dirs, files in os.walk(app_dir):
        rel_top = os.path.relpath(top, app_dir)
        rel_top = "" if rel_top == "." else rel_top + "/"
        dirs[:] = sorted(d for d in dirs if not excluded(rel_top + d, patterns))
        for name in files:
            relative = rel_top + name
            path = Path(top) / name
            if not excluded(relative, patterns) and (path.is_file() or path.is_symlink()):
                found.append(relative)
    return sorted(found)


def content_revision(app_dir: Path, files: list[str]) -> str:
    """A short sha256 of ``files``' names, exec bits and contents."""
    digest = hashlib.sha256()
    for relative in files:
        path = app_dir / relative
        digest.update(relative.encode() + b"\0")
        if path.is_symlink():
            digest.update(b"link:" + os.readlink(path).encode())
        else:
            digest.update(b"x" if os.access(path, os.X_OK) else b"-")
            digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def secret_name(name: str) -> bool:
    """A file name that says "secrets" whatever the project: ``.env`` and ``.env.<anything>``
    (dotenv's files: ``.env.local``, ``.env.production``), and a ``.env`` file whose name
    holds ``secret`` in any case (``secrets.env``, ``production.secrets.env``)."""
    lower = name.lower()
    return (
        lower == ".env"
        or lower.startswith(".env.")
        or (lower.endswith(".env") and "secret" in lower)
    )


def secret_files(settings: Settings) -> frozenset[str]:
    """The SECRETS_FILE of every environment of the project (`config.secrets_files`) that
    lies inside APP_DIR, relative to it."""
    inside = set()
    for path in secrets_files(settings.project_dir):
        if path.is_relative_to(settings.app_dir.resolve()):
            inside.add(path.relative_to(settings.app_dir.resolve()).as_posix())
    return frozenset(inside)


def never_shipped(relative: str, secrets: frozenset[str]) -> bool:
    """Whether ``relative`` (a path in APP_DIR) is a secrets file no release ships, whatever
    EXCLUDES says and whatever the source (a plain directory, a git commit, a dirty work
    tree, ``deploy --ref``): one of ``secrets`` (`secret_files`), or in a file or directory
    whose name is a `secret_name`. The app gets its secrets through SECRETS_FILE only."""
    return relative in secrets or any(secret_name(part) for part in relative.split("/"))


def require_committed(settings: Settings, allow_dirty: bool) -> list[str]:
    """APP_DIR's uncommitted changes a release would ship (none outside git); unless
    ``allow_dirty``, having any is an error naming them."""
    prefix = git_prefix(settings.app_dir)
    if prefix is None:
        return []
    secrets = secret_files(settings)
    changed = [
        f
        for f in (p.removeprefix(prefix) for p in dirty_files(settings.app_dir, settings.excludes))
        if f.split("/")[0] != LOCAL_STATE and not never_shipped(f.rstrip("/"), secrets)
    ]
    if changed and not allow_dirty:
        shown = ", ".join(changed[:10]) + (
            f" and {len(changed) - 10} more" if len(changed) > 10 else ""
        )
        raise FabdeployError(
            f"uncommitted changes in {settings.app_dir}: {shown}. Commit them, or ship them "
            "anyway with --allow-dirty (or ALLOW_DIRTY=yes)"
        )
    return changed
