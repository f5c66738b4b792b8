"""``fab trust``: connect once, show each new host key and record it in known_hosts."""

from __future__ import annotations

from invoke import task

from .ssh import hostkeys, session


@task
def trust(c):  # type: ignore[no-untyped-def]
    """Connect once, show each new host key's fingerprint and record it in known_hosts."""
    _, hosts = session.session(c, trust=True)
    for host in hosts:
        host.open()
        key = host.conn.client.get_transport().get_remote_server_key()
        host.say(f"host key {key.get_name()} {hostkeys.fingerprint(key)} is trusted")
        host.close()
