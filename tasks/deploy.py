"""The deploy flow and rollback: a short list of named steps across the stages."""

from __future__ import annotations

from invoke import task

from . import remote
from .errors import FabdeployError


@task
def deploy(c):  # type: ignore[no-untyped-def]
    """Deploy the app: test, build, upload, switch behind a health check, clean up."""
    remote.session(c)
    raise FabdeployError("deploy: not implemented yet")


@task
def rollback(c):  # type: ignore[no-untyped-def]
    """Switch back to the previous (or a named) release and check its health."""
    remote.session(c)
    raise FabdeployError("rollback: not implemented yet")


@task
def unlock(c):  # type: ignore[no-untyped-def]
    """Break a stale deploy lock on the hosts (shows who held it and since when)."""
    remote.session(c)
    raise FabdeployError("unlock: not implemented yet")


@task
def trust(c):  # type: ignore[no-untyped-def]
    """Connect once, show each new host key's fingerprint and record it in known_hosts."""
    _, hosts = remote.session(c, trust=True)
    for host in hosts:
        host.open()
        key = host.conn.client.get_transport().get_remote_server_key()
        host.say(f"host key {key.get_name()} {remote.fingerprint(key)} is trusted")
        host.close()
