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


class RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is in no known_hosts file, naming the way to trust it."""

    def __init__(self, files: list[str], settings: Settings) -> None:
        self.files = files
        self.settings = settings

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        checked = ", ".join(self.files) or "no known_hosts file"
        env = self.settings.environment
        word = "" if env == "default" else f"{env} "
        raise UnknownHostKey(
            f"unknown host key {key.get_name()} {fingerprint(key)} (checked {checked}). "
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
    """Load the known_hosts files into ``conn`` and refuse (or record) unknown keys."""
    files = known_hosts_files(conn, settings)
    for path in files:
        if os.path.isfile(path):
            conn.client.load_system_host_keys(path)
    if trust or settings.trust_new_hosts:
        target = Path(settings.known_hosts or os.path.expanduser("~/.ssh/known_hosts"))
        conn.client.set_missing_host_key_policy(
            TrustNewHost(target, lambda msg: output.line(conn.host, msg))
        )
    else:
        conn.client.set_missing_host_key_policy(RefuseUnknownHost(files, settings))
