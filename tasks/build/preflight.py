"""A deploy's local preconditions that take no time: files, settings and git state.

`local(settings, allow_dirty=...)` runs first in a deploy, before the app's test suite and
before any connection, so a missing requirements file (or a missing file it includes) or an
uncommitted change (or a lock file behind its pyproject.toml) is reported in a second instead of after the tests. Each problem names
the env file, line and key it comes from (or the requirements file and line), or says what
git thinks of APP_DIR and what to do about it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, FabdeployError
from . import buildcmd, lockfiles, source

if TYPE_CHECKING:
    from ..config import Settings


def local(settings: Settings, *, allow_dirty: bool = False) -> None:
    """Every local precondition of a deploy; the first one that fails raises."""
    app_dir(settings)
    requirements(settings)
    git_state(settings, allow_dirty=allow_dirty or settings.allow_dirty)
    buildcmd.check(settings)  # the build keys agree (BUILD_COMMAND runs in the build step)


def app_dir(settings: Settings) -> None:
    """APP_DIR exists and is a directory."""
    if not settings.app_dir.is_dir():
        what = "does not exist" if not settings.app_dir.exists() else "is not a directory"
        raise ConfigError(f"{settings.where('APP_DIR')}: {settings.app_dir} {what}")


def requirements(settings: Settings) -> lockfiles.Source:
    """The file the packages come from (REQUIREMENTS, or the lock or requirements file found
    in APP_DIR) is non-empty, every file a requirements file includes (``-r``/``-c``) exists
    inside APP_DIR, and a lock is up to date with pyproject.toml; returns what was read."""
    return lockfiles.read(settings)


def git_state(settings: Settings, *, allow_dirty: bool) -> None:
    """Inside git, APP_DIR is tracked, in HEAD and committed (or ``allow_dirty``)."""
    folder = settings.app_dir
    prefix = source.git_prefix(folder)
    if prefix is None:
        return  # a plain directory: shipped as it is
    top = source.git(folder, "rev-parse", "--show-toplevel").stdout.strip()
    ignored = source.git(Path(top), "check-ignore", "-v", "--", prefix or ".")
    if prefix and ignored.returncode == 0:
        rule = ignored.stdout.split("\t")[0].strip()
        raise FabdeployError(
            f"APP_DIR {folder} is ignored by git (rule {rule}): a release is built from what "
            f"git tracks, so there would be nothing to ship. Stop ignoring it and commit it, "
            f"or move the app out of the git work tree {top} to deploy it as a plain directory"
        )
    if source.git(folder, "rev-parse", "--verify", "-q", "HEAD").returncode != 0:
        raise FabdeployError(f"{folder} is in a git work tree without commits: commit first")
    listed = source.git(
        Path(top), "ls-tree", "--name-only", "HEAD", "--", prefix.rstrip("/") or "."
    )
    if prefix and not listed.stdout.strip():
        if allow_dirty:
            return  # shipped as the files are: --allow-dirty asked for that
        raise FabdeployError(
            f"APP_DIR {folder} is not in HEAD (git has no commit of it): commit it "
            f"(git -C {top} add {prefix.rstrip('/')} && git -C {top} commit), or ship the files "
            "as they are with --allow-dirty (or ALLOW_DIRTY=yes)"
        )
    source.require_committed(settings, allow_dirty)
