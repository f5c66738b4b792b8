"""Deploying a git ref (``deploy --ref v1.2``): the ref's APP_DIR, exported from git into a
temporary directory outside the work tree, becomes the APP_DIR of this one deploy.

Nothing in the work tree is read or changed: not the checked-out branch, not uncommitted
changes, not untracked files. The release's revision is the ref's commit; the test suite and
the build run in the export; the export is removed when the deploy ends.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import FabdeployError
from . import source

if TYPE_CHECKING:
    from ..config import Settings


def export(settings: Settings, ref: str) -> Settings:
    """``settings`` for the ref's APP_DIR, exported to a fresh temporary directory (remove it
    with `remove`)."""
    app_dir = settings.app_dir
    if ref.startswith("-") or not ref.strip():
        raise FabdeployError(f"--ref {ref!r}: not a tag, branch or commit")
    prefix = source.git_prefix(app_dir) if app_dir.is_dir() else None
    if prefix is None:
        raise FabdeployError(f"--ref {ref}: APP_DIR {app_dir} is not in a git work tree")
    top = Path(source.git(app_dir, "rev-parse", "--show-toplevel").stdout.strip())
    found = source.git(top, "rev-parse", "--verify", "-q", "--short=12", f"{ref}^{{commit}}")
    if found.returncode != 0:
        raise FabdeployError(f"--ref {ref}: no such tag, branch or commit in {top}")
    commit = found.stdout.strip()
    path = prefix.rstrip("/")
    if path and not source.git(top, "ls-tree", "--name-only", commit, "--", path).stdout.strip():
        raise FabdeployError(f"--ref {ref}: commit {commit} has no {path}/ (APP_DIR)")
    target = Path(tempfile.mkdtemp(prefix=f"fabdeploy-ref-{commit}-"))
    try:
        _extract(top, f"{commit}:{path}" if path else commit, target)
        secret = settings.secrets.path
        if secret is not None and secret.is_relative_to(app_dir):
            (target / secret.relative_to(app_dir)).unlink(missing_ok=True)  # never shipped
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return dataclasses.replace(settings, app_dir=target, revision=commit)


def _extract(top: Path, tree: str, target: Path) -> None:
    """``git archive TREE`` unpacked into ``target``."""
    archive = target / ".fabdeploy-ref.tar"
    with archive.open("wb") as handle:
        result = subprocess.run(
            ["git", "-C", str(top), "archive", "--format=tar", tree],
            stdout=handle,
            stderr=subprocess.PIPE,
            check=False,
        )
    if result.returncode != 0:
        raise FabdeployError(f"git archive {tree} failed: {result.stderr.decode().strip()}")
    with tarfile.open(archive) as tar:
        trusted = getattr(tarfile, "fully_trusted_filter", None)  # our own commit's files
        tar.extractall(target, **({"filter": trusted} if trusted else {}))
    archive.unlink()


def remove(settings: Settings) -> None:
    """Remove the export `export` made (nothing for settings of a work tree)."""
    if settings.revision and settings.app_dir.name.startswith("fabdeploy-ref-"):
        shutil.rmtree(settings.app_dir, ignore_errors=True)
