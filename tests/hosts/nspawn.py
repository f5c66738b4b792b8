"""Real-systemd test hosts: a Debian root booted by ``systemd-nspawn``, systemd as PID 1.

tests/hostkit.py drives these functions for its ``nspawn`` mode; each takes what it needs and
keeps no state. One host, from the outside:

* ``DIR/upper``, ``DIR/work``: the host's own overlay over the release's cached root
  (tests/hosts/rootfs.py); ``DIR/fs`` is the merged root the container boots from, so a test
  reads the host's files at ``DIR/fs/<path>``. The overlay lives until ``unmount``: a host
  can be halted and booted again with its files (a reboot), and the cached root never changes.
* Per host, written into the overlay before the first boot: /etc/hostname, /etc/hosts, a
  machine-id, a fresh ed25519 host key, the client's key in ~deploy/.ssh/authorized_keys and
  ``/etc/systemd/network/80-container-host0.network`` (exactly that name replaces Debian's
  DHCP file) giving ``host0`` its static address.
* ``systemd-nspawn -b --register=no --keep-unit --network-veth`` (no host D-Bus here, so no
  machined): the launcher shell first moves itself into cgroups of its own,
  ``/sys/fs/cgroup/<hierarchy>/nspawn-MACHINE``, so two containers never share one; nspawn's
  supervisor pid is the one to signal, and the container's PID 1 (the *leader*) is the one to
  ``nsenter -t LEADER -a``.
* The host side of the veth is ``ve-MACHINE``; it gets the /30's other address.
* ``halt``: TERM to the supervisor (systemd shuts the container down in about 2 s), then
  KILL to anything left in its cgroups, then the cgroup dirs and nspawn's propagate dir go.

The machine's cgroups here are hybrid v1: ``MemoryMax=`` and ``CPUQuota=`` are not enforced
inside, and systemd 257 (Debian 13) still boots on them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

NSPAWN = "systemd-nspawn"
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP = Path("/sys/fs/cgroup")
PROPAGATE = Path("/run/systemd/nspawn/propagate")
BOOT_TIMEOUT = 40.0
HALT_TIMEOUT = 15.0


class NspawnError(RuntimeError):
    """A container could not be booted or torn down."""


def tool() -> str | None:
    """The systemd-nspawn binary (``None`` when not installed)."""
    return shutil.which(NSPAWN, path=SAFE_PATH)


def hierarchies() -> list[Path]:
    """The cgroup hierarchies a container gets a directory in (hybrid v1 or pure v2)."""
    if (CGROUP / "cgroup.procs").exists():  # pure cgroup2 at /sys/fs/cgroup
        return [CGROUP]
    found = [
        CGROUP / name
        for name in ("systemd", "unified")
        if (CGROUP / name / "cgroup.procs").exists()
    ]
    return found


def unavailable_reason() -> str | None:
    """Why a container cannot boot here (``None``: it can, given a root filesystem)."""
    if os.geteuid() != 0:
        return f"not root (euid {os.geteuid()})"
    if tool() is None:
        return "systemd-nspawn is not installed (apt-get install systemd-container)"
    if not hierarchies():
        return f"no writable systemd cgroup hierarchy under {CGROUP}"
    if not shutil.which("mount", path=SAFE_PATH) or not shutil.which("nsenter", path=SAFE_PATH):
        return "mount or nsenter missing"
    return None


def cgroup_dirs(machine: str) -> list[Path]:
    """Every cgroup directory of ``machine`` (in any hierarchy), whether or not it exists."""
    return [h / f"nspawn-{machine}" for h in sorted(CGROUP.iterdir()) if h.is_dir()] + (
        [CGROUP / f"nspawn-{machine}"] if (CGROUP / "cgroup.procs").exists() else []
    )


def cgroup_pids(machine: str) -> set[int]:
    """Every process in ``machine``'s cgroups, at any depth."""
    pids: set[int] = set()
    for top in cgroup_dirs(machine):
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split() if p.isdigit())
    return pids


def _remove_cgroups(machine: str) -> list[str]:
    """rmdir ``machine``'s cgroup trees bottom-up; return what could not be removed."""
    left: list[str] = []
    for top in cgroup_dirs(machine):
        if not top.is_dir():
            continue
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        try:
            top.rmdir()
        except OSError as exc:
            left.append(f"{top}: {exc}")
    return left


def _write(path: Path, text: str, mode: int = 0o644, owner: tuple[int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    if owner:
        os.chown(path, *owner)


def _ids(fs: Path, user: str) -> tuple[int, int]:
    """uid/gid of ``user`` in the container's /etc/passwd."""
    for line in (fs / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise NspawnError(f"no user {user} in {fs}/etc/passwd")


def prepare(
    hostdir: Path,
    lower: Path,
    *,
    hostname: str,
    address: str,
    prefix: int,
    client_pub: str,
    user: str,
) -> str:
    """Mount ``hostdir/fs`` (an overlay over ``lower``) and write the host's own files.

    Returns the host key's ``TYPE BASE64``.
    """
    fs = hostdir / "fs"
    for sub in ("upper", "work", "fs"):
        (hostdir / sub).mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(fs):
        options = f"lowerdir={lower},upperdir={hostdir / 'upper'},workdir={hostdir / 'work'}"
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(fs)],
            check=True,
            capture_output=True,
            text=True,
        )
    _write(fs / "etc" / "hostname", hostname + "\n")
    _write(
        fs / "etc" / "hosts",
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n{address}\t{hostname}\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n",
    )
    _write(fs / "etc" / "machine-id", secrets.token_hex(16) + "\n", 0o444)
    _write(
        fs / "etc" / "systemd" / "network" / "80-container-host0.network",
        f"[Match]\nName=host0\n\n[Network]\nAddress={address}/{prefix}\nLinkLocalAddressing=no\n",
    )
    key = fs / "etc" / "ssh" / "ssh_host_ed25519_key"
    for path in (key, key.with_name(key.name + ".pub")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{hostname}", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    uid, gid = _ids(fs, user)
    ssh_dir = fs / "home" / user / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(ssh_dir, uid, gid)
    _write(ssh_dir / "authorized_keys", client_pub.strip() + "\n", 0o600, (uid, gid))
    pub = key.with_name(key.name + ".pub").read_text().split()
    return f"{pub[0]} {pub[1]}"


def launch(hostdir: Path, machine: str) -> subprocess.Popen[bytes]:
    """Boot the container from ``hostdir/fs`` in cgroups of its own; return the supervisor."""
    moves = "".join(
        f"mkdir -p {shlex.quote(str(d))} && echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}\n"
        for d in (h / f"nspawn-{machine}" for h in hierarchies())
    )
    script = hostdir / "boot.sh"
    _write(
        script,
        "#!/bin/bash\n"
        f"# fabdeploy hostkit: boots {machine} (real systemd) from {hostdir / 'fs'}\n"
        "set -eu\n"
        + moves
        + f"exec {NSPAWN} --boot --directory={shlex.quote(str(hostdir / 'fs'))} "
        f"--machine={machine} --register=no --keep-unit --network-veth --console=read-only\n",
        0o755,
    )
    with open(hostdir / "console.log", "ab") as log:
        return subprocess.Popen(
            ["/bin/bash", str(script)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"},
            start_new_session=True,
        )


def is_supervisor(pid: int, machine: str) -> bool:
    """Whether ``pid`` is (still) the nspawn supervisor of ``machine``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--machine={machine}".encode() in argv


def leader(supervisor: int) -> int | None:
    """The container's PID 1 as this machine sees it (``None`` until it exists)."""
    own = os.readlink("/proc/self/ns/pid")
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{child}/ns/pid") != own:
                    return int(child)
    return None


def veth(machine: str) -> str:
    """The host side of the container's veth."""
    return f"ve-{machine}"


def wait_booted(
    proc: subprocess.Popen[bytes], machine: str, outer: str, prefix: int, console: Path
) -> int:
    """Wait for the leader and the veth; address the veth; return the leader's pid."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    link = Path(f"/sys/class/net/{veth(machine)}")
    found: int | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NspawnError(f"{NSPAWN} exited {proc.returncode}:\n{_tail(console)}")
        found = found or leader(proc.pid)
        if found and link.exists():
            break
        time.sleep(0.02)
    else:
        raise NspawnError(f"{machine}: no container or no {link.name} after {BOOT_TIMEOUT}s")
    subprocess.run(
        ["ip", "addr", "add", f"{outer}/{prefix}", "dev", link.name],
        check=True,
        capture_output=True,
    )
    subprocess.run(["ip", "link", "set", link.name, "up"], check=True, capture_output=True)
    return found


def wait_running(leader_pid: int, machine: str, console: Path) -> str:
    """Wait until systemd inside says ``running``; return that state (or raise with why)."""
    proc = enter(leader_pid, "systemctl is-system-running --wait", timeout=BOOT_TIMEOUT)
    state = proc.stdout.strip()
    if state == "running":
        return state
    failed = enter(leader_pid, "systemctl --failed --no-legend --plain", timeout=10).stdout
    raise NspawnError(
        f"{machine}: systemd is {state or 'unreachable'}; failed units:\n{failed}\n{_tail(console)}"
    )


def enter(
    leader_pid: int, script: str, *, user: str = "root", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run bash ``script`` inside the container (all its namespaces) as ``user``."""
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": "/root", "USER": "root", "LOGNAME": "root"}
    inner = ["bash", "-c", script]
    if user != "root":  # -u, not -l: a service user's shell may be nologin
        inner = ["runuser", "-u", user, "--", "bash", "-c", script]
    return subprocess.run(
        [
            "nsenter",
            "-t",
            str(leader_pid),
            "-a",
            "--",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            *inner,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd="/",
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def halt(supervisor: int, machine: str, proc: subprocess.Popen[bytes] | None = None) -> list[str]:
    """Shut ``machine`` down and remove its cgroups; return what was left behind."""
    if supervisor and is_supervisor(supervisor, machine):
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGTERM)  # nspawn: an orderly poweroff of the container
        deadline = time.monotonic() + HALT_TIMEOUT
        while time.monotonic() < deadline and _alive(supervisor):
            time.sleep(0.05)
        if _alive(supervisor):
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    left: list[str] = []
    for _ in range(3):
        pids = cgroup_pids(machine)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    else:
        left.append(f"pids still in nspawn-{machine}: {sorted(cgroup_pids(machine))}")
    left += _remove_cgroups(machine)
    shutil.rmtree(PROPAGATE / machine, ignore_errors=True)
    if Path(f"/sys/class/net/{veth(machine)}").exists():
        subprocess.run(["ip", "link", "del", veth(machine)], check=False, capture_output=True)
    return left


def unmount(hostdir: Path) -> list[str]:
    """Unmount the host's overlay (its files stay in ``upper``); return what failed."""
    fs = hostdir / "fs"
    if not os.path.ismount(fs):
        return []
    proc = subprocess.run(["umount", str(fs)], check=False, capture_output=True, text=True)
    if proc.returncode == 0:
        return []
    time.sleep(0.5)
    proc = subprocess.run(["umount", str(fs)], check=False, capture_output=True, text=True)
    return [] if proc.returncode == 0 else [f"umount {fs}: {proc.stderr.strip()}"]


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
