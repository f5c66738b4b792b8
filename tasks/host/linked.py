"""Data that outlives a release (Capistrano's linked_dirs and linked_files).

LINKED_DIRS and LINKED_FILES name paths inside the app (Django's ``media/``, Flask's
``instance/``, a SQLite file) that live in ``shared/`` and are linked into every release when
it is unpacked, before its smoke check. ``fab setup`` (and any deploy, when one is missing)
makes them the app user's (root makes the leaf with ``install``; the directories above a
nested one are the deploy user's) and not readable by other users (directories 0750, files
0640). Cleanup, rollback and a failed deploy remove releases, never shared/: a release holds
only a link. A release that ships one of those paths itself is refused, naming it; a path the
app user does not own is refused too, until ``fab setup`` hands it over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core import shell
from ..core.errors import HostError
from ..core.paths import layout

if TYPE_CHECKING:
    from ..ssh.host import Host


def _env(host: Host, release: str) -> dict[str, object]:
    settings = host.settings
    paths = layout(settings)
    return {
        "APP_USER": host.app_user,
        "SHARED": paths.shared,
        "DIRS": "\n".join(settings.linked_dirs),
        "FILES": "\n".join(settings.linked_files),
        "RELEASE": paths.release(release) if release else "",
    }


def configured(host: Host) -> bool:
    """Whether the env file names any linked path."""
    return bool(host.settings.linked_dirs or host.settings.linked_files)


def apply(host: Host, release: str = "") -> str:
    """Make the shared paths (and link them into ``release``); returns what was made."""
    if not configured(host):
        return "no change"
    result = host.script(
        shell.shell("linked_paths"),
        env=_env(host, release),
        hide=True,
        warn=True,
        label="linked paths",
    )
    if result.failed:
        where = f"release {release}" if release else "shared/"
        reason = host.output.clean(result.stderr.strip()) or f"exit {result.exited}"
        raise HostError(host.name, f"linked paths ({where}): {reason}")
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "no change"
