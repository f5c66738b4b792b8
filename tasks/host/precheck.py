"""What ``fab check`` reads on a host besides its facts: the disk free under the deploy root,
the unit's state and who holds BIND's port (``scripts/check.sh``, key=value lines)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core import kv, shell
from ..core.paths import layout
from . import units

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.host import Host


def precheck_env(settings: Settings, app_user: str) -> dict[str, object]:
    """What ``scripts/check.sh`` reads (the pidfile as ``app_user``)."""
    paths = layout(settings)
    return {
        "ROOT": paths.root,
        "SERVICE": units.service_unit(settings),
        "PORT": settings.port,
        "PIDFILE": paths.pidfile,
        "APP_USER": app_user,
    }


def read(host: Host) -> dict[str, str]:
    """``disk_kib``, ``unit`` (its state) and ``port`` (who holds it) on ``host``."""
    result = host.script(shell.shell("check"), env=precheck_env(host.settings, host.app_user), hide=True, label="check")  # fmt: skip
    return kv.parse(result.stdout)
