"""Facts of this machine: who runs fab, whether a local process is alive; a local lock."""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import socket
from collections.abc import Iterator
from pathlib import Path


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


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (made if missing) while the block runs:
    two fabs filling the same cache entry (a shared FABDEPLOY_CACHE_DIR) take turns, and the
    second finds the entry made. The kernel drops it when the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
