"""Facts of this machine: who runs fab, whether a local process is alive."""

from __future__ import annotations

import getpass
import os
import socket


def local_user() -> str:
    """Who is deploying: local ``user@machine``."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
