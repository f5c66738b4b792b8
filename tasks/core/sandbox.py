"""What every systemd unit fabdeploy writes forbids (docs/security.md#what-the-unit-forbids):
the sandbox directives, the paths the app may write, the capabilities it may be given.

A unit gets every directive of `DIRECTIVES`, except those its settings leave out
(SANDBOX_WITHOUT); ``ReadWritePaths=`` the paths the app writes (its data, its logs, its
runtime files, SANDBOX_WRITABLE); the capabilities of SANDBOX_CAPABILITIES (none by default).
Every directive here is known to systemd 252 (Debian 12) and 257 (Debian 13).
"""

from __future__ import annotations

from collections.abc import Sequence

#: The fixed directives, in the order a unit lists them. ``ProtectHome=``, ``ReadWritePaths=``
#: and the capability sets follow from the settings (`lines`).
DIRECTIVES: tuple[tuple[str, str], ...] = (
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("DevicePolicy", "closed"),
    ("PrivateMounts", "yes"),
    ("PrivateUsers", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("ProtectProc", "invisible"),
    ("RestrictNamespaces", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("RestrictSUIDSGID", "yes"),
    ("RestrictRealtime", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@privileged @resources"),
    ("SystemCallErrorNumber", "EPERM"),
    ("UMask", "0027"),
)

#: Directives SANDBOX_WITHOUT may name: the fixed ones, and ProtectHome.
OPTIONAL = frozenset({name for name, _ in DIRECTIVES} | {"ProtectHome"})

#: Every directive a unit's sandbox may hold. A running service keeps its sandbox until it
#: restarts (a USR2 re-exec inherits the master's namespaces), so a change to any of them
#: waits for a restart (`tasks.host.converge.restart_only`).
NAMES = frozenset(OPTIONAL | {"ReadWritePaths", "CapabilityBoundingSet", "AmbientCapabilities"})

#: Linux capabilities by name (capabilities(7)), the ones SANDBOX_CAPABILITIES may grant.
CAPABILITIES = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    }
)

#: What ``ProtectHome=yes`` hides: a deploy root or writable path under one of these gets
#: ``ProtectHome=read-only`` instead (readable, and writable where ReadWritePaths= says).
HOMES = ("/home", "/root", "/run/user")


def under_home(path: str) -> bool:
    """Whether ``path`` is one of `HOMES` or inside one."""
    return any(path == home or path.startswith(home + "/") for home in HOMES)


def protect_home(paths: Sequence[str]) -> str:
    """``yes`` (no home directory visible), or ``read-only`` when one of ``paths`` (the deploy
    root, the writable paths) lives under a home directory."""
    return "read-only" if any(under_home(path) for path in paths) else "yes"


def lines(
    root: str,
    writable: Sequence[str],
    capabilities: Sequence[str] = (),
    without: Sequence[str] = (),
) -> list[str]:
    """The sandbox of a unit running the app from ``root`` and writing ``writable`` (absolute
    paths, systemd specifiers already escaped), granted ``capabilities``, minus the directives
    named in ``without``.

    Capabilities are granted in the host's user namespace, so a unit given any runs without
    ``PrivateUsers=`` (a capability inside a private user namespace opens nothing outside it).
    """
    dropped = set(without) | ({"PrivateUsers"} if capabilities else set())
    found = [f"{name}={value}" for name, value in DIRECTIVES if name not in dropped]
    if "ProtectHome" not in dropped:
        found.insert(2, f"ProtectHome={protect_home([root, *writable])}")
    if writable:
        found.insert(2, "ReadWritePaths=" + " ".join(dict.fromkeys(writable)))
    granted = " ".join(dict.fromkeys(capabilities))
    found += [f"CapabilityBoundingSet={granted}", f"AmbientCapabilities={granted}"]
    return found
