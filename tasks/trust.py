"""``fab trust``: connect once, show each new host key and record it in known_hosts."""

from __future__ import annotations

from invoke import task

from .ssh import hostkeys, session


@task
def trust(c):  # type: ignore[no-untyped-def]
    """Connect once, show each new host key's fingerprint and record it in known_hosts (the
    ProxyJump hops' too)."""
    _, hosts = session.session(c, trust=True)
    for host in hosts:
        host.open()
        for line in hostkeys.trusted_lines(host.conn):
            host.say(line)
        host.close()
