"""Host keys: the known_hosts files read, unknown hosts refused (or trusted on request)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
from fabric import Connection

if TYPE_CHECKING:
    from ..config import Settings
    from ..core.output import Output


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def hops(conn: Connection) -> list[Connection]:
    """The ProxyJump hops Fabric made for ``conn``: its ``gateway``, that one's, and so on;
    [] without ProxyJump (a ProxyCommand is an ``ssh`` of its own, checking its own keys)."""
    found = []
    gateway = getattr(conn, "gateway", None)  # a stand-in connection may have none
    while isinstance(gateway, Connection):
        found.append(gateway)
        gateway = gateway.gateway
    return found


def key_name(conn: Connection) -> str:
    """The name ``conn``'s host key is recorded under: ``host``, or ``[host]:port``."""
    return conn.host if conn.port == 22 else f"[{conn.host}]:{conn.port}"


def jump_label(hop: Connection) -> str:
    """``jump host bastion (10.0.0.5:2222)``: a hop as its ssh_config alias and address."""
    address = hop.host if hop.port == 22 else f"{hop.host}:{hop.port}"
    given = hop.original_host
    return f"jump host {given}" + (f" ({address})" if address != given else "")


def hop_of(conn: Connection, name: str) -> Connection | None:
    """The ProxyJump hop of ``conn`` whose key is recorded as ``name`` (None: ``conn`` itself)."""
    return next((hop for hop in hops(conn) if key_name(hop) == name), None)


class RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is in no known_hosts file, naming the way to trust it.

    ``jump`` names the ProxyJump hop the policy checks (empty: the target host itself)."""

    def __init__(self, files: list[str], settings: Settings, jump: str = "") -> None:
        self.files = files
        self.settings = settings
        self.jump = jump

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        checked = ", ".join(self.files) or "no known_hosts file"
        env = self.settings.environment
        word = "" if env == "default" else f"{env} "
        raise UnknownHostKey(
            (f"{self.jump}: " if self.jump else "")
            + f"unknown host key {key.get_name()} {fingerprint(key)} (checked {checked}). "
            f"If that is the key you expect, trust it with `fab {word}trust` "
            f"(with -H for hosts given there) or set TRUST_NEW_HOSTS=yes in {self.settings.source}"
        )


class TrustNewHost(paramiko.MissingHostKeyPolicy):
    """Accept a host never seen before and append its key to ``path`` (trust on first use)."""

    def __init__(self, path: Path, announce: Callable[[str], None]) -> None:
        self.path = path
        self.announce = announce

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        self.announce(f"trusted new host key {key.get_name()} {fingerprint(key)} -> {self.path}")


class UnknownHostKey(paramiko.SSHException):
    """The host's key is not known and trusting new hosts was not asked for."""


def known_hosts_files(conn: Connection, settings: Settings) -> list[str]:
    """known_hosts files to check: ~/.ssh/known_hosts, ssh_config's, and KNOWN_HOSTS."""
    files = [os.path.expanduser("~/.ssh/known_hosts")]
    for option in ("userknownhostsfile", "globalknownhostsfile"):
        value = conn.ssh_config.get(option)
        for entry in value if isinstance(value, list) else [value] if value else []:
            files.extend(os.path.expanduser(part) for part in str(entry).split())
    if settings.known_hosts:
        files.append(settings.known_hosts)
    unique = list(dict.fromkeys(f for f in files if f and f != "/dev/null"))
    # KNOWN_HOSTS is named even before it exists: it is where `fab trust` records keys
    return [f for f in unique if os.path.isfile(f) or f == settings.known_hosts]


def apply_host_key_policy(
    conn: Connection, settings: Settings, output: Output, *, trust: bool = False
) -> None:
    """Load the known_hosts files into ``conn`` and refuse (or record) unknown keys; the same
    for every ProxyJump hop of ``conn`` (Fabric's own hop connections accept any key), each
    with the files its own ssh_config names. What is said of a hop names it and goes under
    the target host's name."""
    for hop in [conn, *hops(conn)]:
        jump = "" if hop is conn else jump_label(hop)
        files = known_hosts_files(hop, settings)
        for path in files:
            if os.path.isfile(path):
                hop.client.load_system_host_keys(path)
        if trust or settings.trust_new_hosts:
            target = Path(settings.known_hosts or os.path.expanduser("~/.ssh/known_hosts"))
            prefix = f"{jump}: " if jump else ""
            hop.client.set_missing_host_key_policy(
                TrustNewHost(target, lambda msg, p=prefix: output.line(conn.host, p + msg))
            )
        else:
            hop.client.set_missing_host_key_policy(RefuseUnknownHost(files, settings, jump))


def trusted_lines(conn: Connection) -> list[str]:
    """``host key <type> <fingerprint> is trusted`` for an open ``conn``, after one line for
    each of its ProxyJump hops (in the order they were dialed), each naming its hop."""
    lines = []
    for hop in [*reversed(hops(conn)), conn]:
        if hop.transport is not None:
            key = hop.transport.get_remote_server_key()
            prefix = "" if hop is conn else f"{jump_label(hop)}: "
            lines.append(f"{prefix}host key {key.get_name()} {fingerprint(key)} is trusted")
    return lines
