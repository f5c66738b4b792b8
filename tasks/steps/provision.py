"""The setup step: every item of setup on a host (`tasks.host.provision`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..host.provision import running_keeps, set_up

if TYPE_CHECKING:
    from ..engine.flow import Flow
    from ..ssh.host import Host


def set_up_host(flow: Flow, host: Host) -> None:
    """Packages, the app user, directories, secrets, linked paths and units, as needed."""
    running_keeps(host, set_up(host))
