"""Real SSH "hosts" on this machine for fabdeploy's integration tests.

``HostKit`` starts N hosts, each one a real ``sshd`` that fabdeploy (fabric/paramiko) can reach
over TCP, and tears them all down again. Importable without pytest, and a CLI::

    python -m tests.hostkit up --hosts 2 [--state DIR]   # start, write DIR/state.json + hosts.env
    python -m tests.hostkit down --state DIR [--purge]   # stop what DIR/state.json recorded
    python -m tests.hostkit down --all                   # stop every kit listed by `list`
    python -m tests.hostkit list                         # state dirs known under the base dir

Three modes (``FABDEPLOY_HOSTKIT_MODE=netns|loopback|nspawn`` overrides the automatic
choice between the first two):

nspawn (root, systemd-nspawn; ``HostKit(dir, mode="nspawn", release="bookworm"|"trixie")``)
    Real servers: a cached Debian root (tests/hosts/rootfs.py) booted by systemd-nspawn with
    systemd as PID 1, on an overlay of the host's own, in cgroups of its own, addressed on a
    veth /30 of the kit's /24 (tests/hosts/nspawn.py has the details). What every test that
    starts, switches, stops or reads the service uses. ``TestHost.pid`` is the container's
    PID 1 (``sh`` enters all its namespaces), ``supervisor`` the nspawn process that
    ``stop()`` signals; ``path("/srv/...")`` is a host file seen from here; ``reboot(host)``
    halts and boots it again with its files. ``python -m tests.hostkit up --mode nspawn``.

netns (root, ``ip netns`` works)
    Each host is a network namespace ``fdt-RUN-I`` joined to the root namespace by a veth pair
    (root side ``fdRUNhI`` = 10.A.B.4i+1/30, host side ``eth0`` = 10.A.B.4i+2/30) and a private
    mount + UTS namespace (``unshare -m -u --propagation private``); the sshd is the last exec
    of that chain, so ``TestHost.pid`` is the sshd and ``nsenter -t PID -n -m -u`` enters the
    host. The kit's 10.A.B.0/24 (A in 200..250) is one that no address or route on the machine
    uses; while the kit lives it holds an ``unreachable 10.A.B.0/24`` route, so an address of
    the /24 that is not (or no longer) a host fails at once instead of leaving the machine by
    the default route. Inside a host:

    * ``/etc`` is a private copy of the machine's /etc (``root/etc``, ~0.1 s to copy) with the
      ``deploy`` user (uid 2000 unless taken) in passwd/group/shadow/gshadow, passwordless sudo
      in ``/etc/sudoers.d/fabdeploy-deploy``, its own /etc/hosts and /etc/hostname, a fresh
      ed25519 host key, ``/etc/ssh/sshd_config.NAME`` and an empty /etc/systemd/system. A copy
      of all /etc rather than files bind-mounted over passwd/shadow, so ``useradd``/``groupadd``
      inside a host work (they rename files, which a bind-mounted file forbids). Nothing of
      the machine's /etc is ever changed.
    * ``/srv``, ``/home``, ``/var/log``, ``/run``, ``/tmp`` are ``root/srv``, ``root/home``,
      ``root/log``, ``root/run``, ``root/tmp``; tests can inspect them from outside. The sshd
      logs to ``root/log/sshd.log`` (one "kex_exchange_identification" line per start is the
      kit's readiness probe).
    * ``/usr/bin/systemctl`` is docker-systemctl-replacement's ``systemctl3.py`` (copied to the
      kit's ``bin/`` with a ``#!/usr/bin/python3`` shebang) and ``/usr/bin/journalctl`` is a
      small reader of its log files (``bin/journalctl``, written by this module).
    * ``/usr/lib/systemd/system`` (= /lib/systemd/system) is an empty dir: the replacement
      would otherwise load the machine's ~200 vendor units, and ``daemon-reload`` (a syntax
      check of every unit) then takes 1.3 s and prints ~130 ERROR lines on stderr. The SysV
      scripts in /etc/init.d still show up in ``systemctl list-units --all`` (inactive).
    * ``/opt`` and everything else is the machine's own: pip's config (/etc/xdg/pip) points at
      the machine's wheel dirs under /opt, and that works inside a host too.

    A host has NO route off its /30: nothing outside this machine is reachable from it, so pip
    inside a host must install with ``--no-index`` from local wheels (/opt/wheels, a wheelhouse
    uploaded by the deploy) or it spends seconds retrying PyPI and fails. The repo's own .venv
    is no use to ``deploy`` either: its python is a symlink into /root/.pyenv (mode 0700).
    There is no PID namespace: ``ps`` inside a host shows the machine's processes, and
    processes that services leave behind are re-parented to the machine's init, which reaps
    them. ``stop()`` kills by ``ip netns pids NAME`` (never by process name).

loopback (not root, or no namespaces)
    One unprivileged sshd on 127.0.0.1 and a free port, logging in as the current user, key
    in a kit-owned AuthorizedKeysFile (``StrictModes no``). No sudo/systemctl guarantees, no
    isolation: ``start`` refuses a second host (``NeedsRootError``). Run as root, this sshd
    gets a private /run (for its /run/sshd) in a mount namespace of its own.

docker-systemctl-replacement 1.7.1097 as seen from a host (checked by hand; notes for the library)
    * It must run as root (``sudo systemctl ...``): as another user it looks at *user* units
      under ~/.config/systemd/user. There is no daemon: each call does its job and exits, so
      ``Restart=`` is never acted on (a service that dies stays dead, ``is-active`` says
      ``failed``). Each call takes ~0.1 s (the 7000-line script is compiled every time).
    * ``start`` of Type=simple/exec/idle forks, ``setsid()``s and execs ExecStart (after
      ``User=``/``Group=``/``WorkingDirectory=``/``Environment*=``), writes the child's pid as
      ``MainPID`` into the status file ``/run/UNIT.status`` (e.g. /run/demo.service.status) and
      returns at once: it does not wait for the app to listen, so poll the port. The child's
      parent is then the machine's init. ``$MAINPID`` is empty in ExecStart's environment.
      Type=forking waits for ExecStart to exit and then for ``PIDFile=``. Type=oneshot runs to
      completion. Type=notify works (NOTIFY_SOCKET under /run/systemd) but is slow: after
      READY=1 it waits ~3 s more for a MAINPID= message unless PIDFile= is set, so
      ``start`` of a Type=notify gunicorn took 6 s; use Type=simple/exec (or set PIDFile=).
      Per-unit flock files are ``/run/systemd/UNIT.lock``.
    * stdout/stderr (StandardOutput=journal, the default) are appended to
      ``/var/log/journal/UNIT.service.log``: the unit FILE's basename + ".log" (not
      ``UNIT.unit.log``, which is only used for a unit without a file). Python's stdout is
      block-buffered there (print() shows up late; use ``python3 -u`` or PYTHONUNBUFFERED=1);
      stderr is line-buffered. Our journalctl reads that file and accepts ``-u foo`` or
      ``-u foo.service``, ``-n N``, ``-f``, ``--no-pager``, ``-o cat`` (output is always the
      raw lines, as with ``-o cat``), and prints ``-- No entries --`` for an unknown unit.
    * ``stop`` runs ExecStop if given, else sends KillSignal= (default SIGTERM) to the main pid
      and, with KillMode=control-group (default), to its descendants (found via /proc: no
      cgroups), polls once a second up to TimeoutStopSec, then SIGKILLs (SendSIGKILL=yes): a
      stop takes 1-2 s. The status file is removed.
    * ``reload`` runs ExecReload with ``$MAINPID`` expanded: ``ExecReload=/bin/kill -HUP
      $MAINPID`` works (gunicorn re-spawns its workers; a warning that /bin/kill is
      asynchronous goes to stderr). A unit WITHOUT ExecReload: ``reload`` does nothing and
      exits 0; ``reload-or-restart`` restarts it.
    * SURPRISE: ``systemctl kill -s SIG UNIT`` ignores ``-s`` (documented "(ignored)") and
      does a full kill with KillSignal= (SIGTERM, then SIGKILL), so ``kill -s HUP``/``-s USR2``
      kills the service and the unit is inactive afterwards. Signal the main pid yourself
      (``sudo kill -USR2 $(systemctl show -p MainPID UNIT | cut -d= -f2)``) or use ExecReload.
    * gunicorn's USR2 re-exec is not tracked: the new master is a child of the old one, and
      when the old master exits the unit reads ``failed`` while the new master runs on
      unsupervised (only ``stop()``/netns teardown kills it). Prefer HUP or restart.
    * ``show -p MainPID UNIT`` prints ``MainPID=1234``; ``--value`` is not supported (usage
      error). ``status`` exits 3 for an inactive unit, ``is-active`` prints active/inactive/
      failed, ``enable`` makes the usual /etc/systemd/system/*.wants symlinks,
      ``is-enabled`` works. ``daemon-reload`` only syntax-checks every unit file (units are
      re-read on every call anyway).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import ipaddress
import json
import os
import pwd
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.hosts import nspawn, rootfs

__all__ = [
    "DEFAULT_BASE",
    "HostKit",
    "HostKitError",
    "NeedsRootError",
    "TestHost",
    "find_systemctl_replacement",
    "main",
    "netns_unavailable_reason",
    "nspawn_unavailable_reason",
]

MODE_ENV = "FABDEPLOY_HOSTKIT_MODE"
BASE_ENV = "FABDEPLOY_HOSTKIT_BASE"
DEFAULT_BASE = Path(
    os.environ.get(BASE_ENV)
    or ("/tmp/fabdeploy-hostkit" if os.geteuid() == 0 else f"/tmp/fabdeploy-hostkit-{os.getuid()}")
)
STATE_FILE = "state.json"
DEPLOY_USER = "deploy"
DEPLOY_UID = 2000
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SSHD = "/usr/sbin/sshd"
PORT_WAIT = 5.0
MAX_HOSTS_PER_KIT = 64  # one /30 each in the kit's /24

# Subnets picked by kits of this process and not yet released (two kits never collide even
# before their veths exist).
_RESERVED_SUBNETS: set[str] = set()


class HostKitError(RuntimeError):
    """A host could not be started or stopped."""


class NeedsRootError(HostKitError):
    """What was asked for needs root and network namespaces (netns mode)."""


# --- small helpers ---------------------------------------------------------------------------


def _run(
    args: Sequence[str], *, check: bool = True, timeout: float = 30, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with text output captured; on ``check`` failure raise ``HostKitError``."""
    proc = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[arg-type]
    )
    if check and proc.returncode != 0:
        raise HostKitError(
            f"{shlex.join(args)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}"
        )
    return proc


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running (non-zombie) process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    """The command line of ``pid`` with NULs as spaces ("" when gone)."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _mentions(text: str, name: str) -> bool:
    """Whether ``text`` contains ``name`` not followed by another digit (fdt-x-1 vs fdt-x-10)."""
    return re.search(re.escape(name) + r"(?![0-9])", text) is not None


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (not ``pid`` itself)."""
    children = _children_map()
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        if p in found:
            continue
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _terminate(pids: Iterable[int], *, grace: float = 1.5) -> list[int]:
    """SIGTERM ``pids``, wait up to ``grace`` s, SIGKILL the rest; return those still alive."""
    pids = sorted({p for p in pids if p > 1 and p != os.getpid()})
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)
    rest = [p for p in pids if _alive(p)]
    if rest:
        _signal_all(rest, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(_alive(p) for p in rest):
            time.sleep(0.02)
    return [p for p in pids if _alive(p)]


def _port_open(address: str, port: int, timeout: float = 0.25) -> bool:
    """Whether a TCP connection to ``address:port`` is accepted."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, comment: str) -> str:
    """Create an ed25519 key pair at ``path`` (0600) and return the public key line."""
    for p in (path, path.with_name(path.name + ".pub")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    path.chmod(0o600)
    return path.with_name(path.name + ".pub").read_text().strip()


def _write(path: Path, text: str, mode: int = 0o644, owner: tuple[int, int] | None = None) -> None:
    """Write ``text`` to ``path`` with ``mode`` (and ``owner`` uid/gid)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, *owner)


def _mkdir(path: Path, mode: int = 0o755, owner: tuple[int, int] | None = None) -> Path:
    """``mkdir -p`` then set ``mode`` (and ``owner``) on the last component."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, *owner)
    return path


def _tool_path(name: str) -> str | None:
    """``name`` on PATH or in the sbin dirs (which a non-login PATH may lack)."""
    return shutil.which(name) or shutil.which(name, path=SAFE_PATH)


# --- capabilities ----------------------------------------------------------------------------

_NETNS_REASON: list[str | None] = []


def netns_unavailable_reason() -> str | None:
    """Why netns mode cannot work here (``None`` when it can). Probed once per process."""
    if _NETNS_REASON:
        return _NETNS_REASON[0]
    reason: str | None = None
    if os.geteuid() != 0:
        reason = f"not root (euid {os.geteuid()})"
    else:
        missing = [
            t
            for t in ("ip", "unshare", "nsenter", "runuser", "mount", "ssh-keygen")
            if not _tool_path(t)
        ]
        if not os.access(SSHD, os.X_OK):
            missing.append(SSHD)
        if missing:
            reason = "missing tools: " + ", ".join(missing)
        else:
            try:
                probe = _run(
                    ["unshare", "--net", "--mount", "--uts", "true"], check=False, timeout=10
                )
                if probe.returncode != 0:
                    reason = f"cannot create network/mount namespaces: {probe.stderr.strip()}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                reason = f"cannot create network/mount namespaces: {exc}"
    _NETNS_REASON.append(reason)
    return reason


def nspawn_unavailable_reason(release: str) -> str | None:
    """Why real-systemd hosts of ``release`` cannot boot here (``None``: they can)."""
    reason = netns_unavailable_reason() or nspawn.unavailable_reason()
    if reason is None and not rootfs.is_ready(release):
        reason = rootfs.unavailable_reason()
    return reason


def _choose_mode(mode: str | None) -> str:
    """``mode``, else $FABDEPLOY_HOSTKIT_MODE, else netns when it works, else loopback."""
    chosen = (mode or os.environ.get(MODE_ENV, "") or "").strip().lower()
    if chosen in ("", "auto"):
        return "netns" if netns_unavailable_reason() is None else "loopback"
    if chosen not in ("netns", "loopback", "nspawn"):
        raise HostKitError(f"{MODE_ENV} must be 'netns', 'loopback' or 'nspawn', not {chosen!r}")
    return chosen


def find_systemctl_replacement() -> Path:
    """Path of docker-systemctl-replacement's ``systemctl3.py`` (the single-file script)."""
    override = os.environ.get("FABDEPLOY_SYSTEMCTL_PY")
    candidates: list[Path] = [Path(override)] if override else []
    for modname in ("systemctl2", "systemctl3"):
        try:
            spec = importlib.util.find_spec(modname)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec else []
        for loc in locations:
            candidates += [
                Path(loc) / "systemctl3.py",
                Path(loc).parent / "systemctl2" / "systemctl3.py",
            ]
    repo = Path(__file__).resolve().parents[1]
    candidates += sorted(repo.glob(".venv/lib/python3*/site-packages/systemctl2/systemctl3.py"))
    for cand in candidates:
        if cand.is_file() and "def main" in cand.read_text(errors="replace")[-20000:]:
            return cand
    raise HostKitError(
        "docker-systemctl-replacement not found (pip install docker-systemctl-replacement, "
        "or set FABDEPLOY_SYSTEMCTL_PY to its systemctl3.py)"
    )


JOURNALCTL = r'''#!/usr/bin/python3
"""journalctl for fabdeploy test hosts: prints docker-systemctl-replacement's unit logs.

Reads /var/log/journal/UNIT.service.log (what systemctl3.py writes for a unit file
UNIT.service), falling back to UNIT.unit.log / UNIT.service.unit.log. Output is always the raw
lines, as with `-o cat`. Options that only change formatting or paging are accepted and ignored.
"""
import argparse
import glob
import os
import sys

JOURNAL = "/var/log/journal"


def files_for(unit):
    base = unit if "." in unit else unit + ".service"
    names = [base + ".log", unit + ".unit.log", base + ".unit.log", unit + ".log"]
    paths = [os.path.join(JOURNAL, n) for n in dict.fromkeys(names)]
    found = [p for p in paths if os.path.isfile(p)]
    return found[:1] or [paths[0]]


p = argparse.ArgumentParser(prog="journalctl")
p.add_argument("-u", "--unit", action="append", default=[])
p.add_argument("-n", "--lines", nargs="?", const="10", default=None)
p.add_argument("-f", "--follow", action="store_true")
p.add_argument("-o", "--output", default="short")
p.add_argument("-q", "--quiet", action="store_true")
p.add_argument("-e", "--pager-end", action="store_true")
p.add_argument("-b", "--boot", nargs="?", const="0")
p.add_argument("-x", "--catalog", action="store_true")
p.add_argument("-a", "--all", action="store_true")
p.add_argument("--no-pager", action="store_true")
p.add_argument("--no-hostname", action="store_true")
p.add_argument("--system", action="store_true")
p.add_argument("-S", "--since")
p.add_argument("-U", "--until")
args, _unknown = p.parse_known_args()

if args.unit:
    paths = [f for u in args.unit for f in files_for(u)]
else:
    paths = sorted(glob.glob(os.path.join(JOURNAL, "*.log")))
lines = None
if args.lines not in (None, "all", "+0"):
    try:
        lines = abs(int(args.lines))
    except ValueError:
        sys.exit("journalctl: bad -n value: %r" % args.lines)
if args.pager_end and lines is None:
    lines = 1000
if args.follow:
    count = str(10 if lines is None else lines)
    os.execv("/usr/bin/tail", ["tail", "-q", "-n", count, "-F", *paths])
existing = [f for f in paths if os.path.isfile(f)]
if not existing:
    if not args.quiet:
        print("-- No entries --")
    sys.exit(0)
text = []
for f in existing:
    with open(f, "rb") as fh:
        text += fh.read().decode("utf-8", "replace").splitlines()
if lines is not None:
    text = text[-lines:] if lines else []
out = sys.stdout
for line in text:
    out.write(line + "\n")
out.flush()
'''


# --- the host --------------------------------------------------------------------------------


@dataclass
class TestHost:
    """One started host. ``sh`` runs a script inside it; ``url`` builds an HTTP address."""

    __test__ = False  # not a pytest test class

    name: str
    address: str
    port: int
    user: str
    root: Path
    pid: int
    host_key_line: str
    mode: str = "netns"
    netns: str = ""
    veth: str = ""
    startup_seconds: float = 0.0
    client_key: Path | None = None
    known_hosts: Path | None = None
    release: str = ""  # nspawn: the Debian release it boots
    machine: str = (
        ""  # nspawn: the container's machine name (veth ve-MACHINE, cgroup nspawn-MACHINE)
    )
    supervisor: int = 0  # nspawn: the systemd-nspawn process (``pid`` is the container's PID 1)
    systemd: str = ""  # nspawn: ``systemctl --version``'s first line
    python: str = ""  # nspawn: ``python3 --version``

    def path(self, inside: str) -> Path:
        """Where the host's file ``inside`` (an absolute path) is, seen from this machine."""
        inside = "/" + inside.lstrip("/")
        if self.mode == "nspawn":
            for volatile in ("/tmp", "/run"):  # tmpfs inside the container: not on the overlay
                if inside == volatile or inside.startswith(volatile + "/"):
                    raise HostKitError(f"{self.name}: {volatile} is a tmpfs inside; use sh()")
            return self.root / "fs" / inside.lstrip("/")
        for prefix, local in (
            ("/var/log", "log"),
            ("/srv", "srv"),
            ("/home", "home"),
            ("/etc", "etc"),
            ("/run", "run"),
            ("/tmp", "tmp"),
        ):
            if inside == prefix or inside.startswith(prefix + "/"):
                return self.root / local / inside[len(prefix) :].lstrip("/")
        raise HostKitError(
            f"{self.name}: {inside} is not a path of the host's own (mode {self.mode})"
        )

    def sh(
        self, script: str, *, user: str = "root", check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run bash ``script`` inside the host as ``user``; text output captured.

        netns mode: ``nsenter -t PID -n -m -u`` (the sshd's namespaces), then ``runuser -l USER``
        for anyone but root. loopback mode: runs on this machine as the current user (``user``
        root or the current user) or, when this process is root, ``runuser -l USER``.
        With ``check``, a non-zero exit raises ``subprocess.CalledProcessError``.
        """
        env = {
            "PATH": SAFE_PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "USER": "root",
            "LOGNAME": "root",
        }
        if self.mode == "nspawn":
            proc = nspawn.enter(self.pid, script, user=user, timeout=timeout)
            if check and proc.returncode != 0:
                raise subprocess.CalledProcessError(
                    proc.returncode, ["nsenter", self.name, script], proc.stdout, proc.stderr
                )
            return proc
        prefix: list[str] = []
        if self.mode == "netns":
            prefix = ["nsenter", "-t", str(self.pid), "-n", "-m", "-u", "--"]
            as_root = user == "root"
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            env.update(HOME=str(Path.home()), USER=me, LOGNAME=me)
            as_root = user in ("root", me)  # without root, "root" means the current user
            if not as_root and os.geteuid() != 0:
                raise HostKitError(f"loopback host runs as {me}; cannot run as {user}")
        cmd = (
            [*prefix, "bash", "-c", script]
            if as_root
            else [*prefix, "runuser", "-l", user, "-c", script]
        )
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd="/", check=False
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def url(self, port: int, path: str = "/") -> str:
        """``http://ADDRESS:PORT/path``."""
        return f"http://{self.address}:{port}/{path.lstrip('/')}"

    def to_json(self) -> dict[str, object]:
        """This host as JSON-able data (paths as strings)."""
        data = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TestHost:
        """Inverse of ``to_json``."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in fields}
        for key in ("root", "client_key", "known_hosts"):
            if kw.get(key) is not None:
                kw[key] = Path(str(kw[key]))
        return cls(**kw)  # type: ignore[arg-type]


# --- the kit ---------------------------------------------------------------------------------


class HostKit:
    """Starts and stops test hosts; everything lives under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        run_id: str | None = None,
        mode: str | None = None,
        release: str | None = None,
    ) -> None:
        self.release = release or rootfs.RELEASES[0]
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id or secrets.token_hex(2)
        if not re.fullmatch(r"[0-9a-z]{1,6}", self.run_id):
            raise HostKitError(f"run_id must be 1-6 chars of [0-9a-z], not {self.run_id!r}")
        self.mode = _choose_mode(mode)
        self.hosts: list[TestHost] = []
        self.subnet: str | None = None
        self.client_key = self.workdir / "client_key"
        self.known_hosts = self.workdir / "known_hosts"
        self.stopped = False
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        if not self.client_key.exists():
            _keygen(self.client_key, f"fabdeploy-hostkit-{self.run_id}")
        if not self.known_hosts.exists():
            _write(self.known_hosts, "")

    def __repr__(self) -> str:
        names = [h.name for h in self.hosts]
        return f"HostKit({str(self.workdir)!r}, mode={self.mode!r}, hosts={names})"

    # --- public ------------------------------------------------------------------------------

    def start(self, n: int, release: str | None = None) -> list[TestHost]:
        """Start ``n`` more hosts and return them (``self.hosts`` accumulates every host).

        ``release``: nspawn kits only, a Debian release other than the kit's for these hosts.
        """
        if n < 1:
            raise ValueError("n must be >= 1")
        if self.mode == "loopback" and len(self.hosts) + n > 1:
            raise NeedsRootError(
                f"{len(self.hosts) + n} hosts need root and network namespaces (netns mode); "
                "loopback mode runs one host "
                f"({netns_unavailable_reason() or MODE_ENV + '=loopback'})"
            )
        if self.mode in ("netns", "nspawn"):
            reason = netns_unavailable_reason()
            if self.mode == "nspawn":
                reason = nspawn_unavailable_reason(release or self.release)
            if reason:
                raise NeedsRootError(f"{self.mode} mode cannot start hosts here: {reason}")
            if len(self.hosts) + n > MAX_HOSTS_PER_KIT:
                raise HostKitError(f"at most {MAX_HOSTS_PER_KIT} hosts per kit")
        self.stopped = False
        if self.mode == "nspawn":
            return self._start_nspawn(n, release or self.release)
        started: list[TestHost] = []
        for _ in range(n):
            index = len(self.hosts)
            host = self._start_netns(index) if self.mode == "netns" else self._start_loopback(index)
            started.append(host)
        return started

    def stop(self, *, purge: bool = False) -> None:
        """Tear down every host this kit started (idempotent; fine after a half-done start).

        Host data (``root/`` dirs, logs) stays for debugging unless ``purge``.
        """
        errors: list[str] = self._stop_nspawn([h for h in self.hosts if h.mode == "nspawn"])
        for host in self.hosts:
            if host.mode == "nspawn":
                continue
            try:
                if host.mode == "netns":
                    self._stop_netns(host)
                else:
                    self._stop_loopback(host)
            except Exception as exc:  # keep going: stop as much as possible
                errors.append(f"{host.name}: {exc}")
        try:
            self._release_subnet()
        except Exception as exc:
            errors.append(f"subnet {self.subnet}: {exc}")
        self.stopped = True
        with contextlib.suppress(OSError):
            self.write_state()
        if purge and not any(os.path.ismount(h.root / "fs") for h in self.hosts):
            shutil.rmtree(self.workdir / "hosts", ignore_errors=True)
        if errors:
            raise HostKitError("stop left things behind: " + "; ".join(errors))

    def write_state(self) -> Path:
        """Write ``workdir/state.json`` (what ``load`` and the CLI ``down`` need)."""
        state = {
            "version": 1,
            "mode": self.mode,
            "release": self.release,
            "run_id": self.run_id,
            "workdir": str(self.workdir),
            "subnet": self.subnet,
            "client_key": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "stopped": self.stopped,
            "hosts": [h.to_json() for h in self.hosts],
        }
        path = self.workdir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, workdir: Path) -> HostKit:
        """The kit recorded in ``workdir/state.json`` (by ``write_state``)."""
        path = Path(workdir) / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HostKitError(f"no hostkit state in {workdir}: {exc}") from exc
        kit = cls.__new__(cls)
        kit.workdir = Path(state["workdir"])
        kit.run_id = state["run_id"]
        kit.mode = state["mode"]
        kit.release = state.get("release") or rootfs.RELEASES[0]
        kit.subnet = state.get("subnet")
        kit.client_key = Path(state["client_key"])
        kit.known_hosts = Path(state["known_hosts"])
        kit.stopped = bool(state.get("stopped"))
        kit.hosts = [TestHost.from_json(h) for h in state["hosts"]]
        kit._procs = {}
        return kit

    def hosts_env(self) -> str:
        """``HOSTS=``/``SSH_KEY=``/``KNOWN_HOSTS=`` lines for fabdeploy's env files."""
        hosts = ",".join(
            f"{h.user}@{h.address}" + ("" if h.port == 22 else f":{h.port}") for h in self.hosts
        )
        return f"HOSTS={hosts}\nSSH_KEY={self.client_key}\nKNOWN_HOSTS={self.known_hosts}\n"

    # --- netns -------------------------------------------------------------------------------

    def _pick_subnet(self) -> str:
        """A random 10.A.B.0/24 (A in 200..250) that nothing on this machine uses."""
        used: list[ipaddress.IPv4Network] = []
        for line in _run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
            tokens = line.split()
            if "inet" in tokens:
                used.append(ipaddress.ip_interface(tokens[tokens.index("inet") + 1]).network)
        kinds = {
            "local",
            "broadcast",
            "unicast",
            "multicast",
            "unreachable",
            "prohibit",
            "blackhole",
            "throw",
            "nat",
            "anycast",
        }
        for line in _run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
            tokens = line.split()
            if not tokens:
                continue
            dst = tokens[1] if tokens[0] in kinds and len(tokens) > 1 else tokens[0]
            if dst == "default":
                continue
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(dst, strict=False))
        rng = random.SystemRandom()
        for _ in range(500):
            net = ipaddress.ip_network(f"10.{rng.randint(200, 250)}.{rng.randint(0, 255)}.0/24")
            if str(net) in _RESERVED_SUBNETS:
                continue
            if any(net.overlaps(u) for u in used if isinstance(u, ipaddress.IPv4Network)):
                continue
            # Claim it with the guard route: `add` fails if another process (a pytest-xdist
            # worker, another run) claimed the same /24 since the routes were read.
            if _run(["ip", "route", "add", "unreachable", str(net)], check=False).returncode:
                continue
            _RESERVED_SUBNETS.add(str(net))
            return str(net)
        raise HostKitError("no free 10.200-250.x.0/24 subnet found")

    def _tools(self) -> tuple[Path, Path]:
        """The kit's copies of systemctl3.py and of our journalctl (created once)."""
        bindir = _mkdir(self.workdir / "bin")
        systemctl, journalctl = bindir / "systemctl", bindir / "journalctl"
        if not systemctl.exists():
            src = find_systemctl_replacement().read_text()
            body = src.split("\n", 1)[1] if src.startswith("#!") else src
            _write(systemctl, "#!/usr/bin/python3\n" + body, 0o755)
        if not journalctl.exists():
            _write(journalctl, JOURNALCTL, 0o755)
        return systemctl, journalctl

    def _deploy_ids(self, passwd_text: str, group_text: str) -> tuple[int, int]:
        """uid/gid for ``deploy``: the machine's if it has one, else 2000 (or the next free)."""
        users = {
            f[0]: f for f in (line.split(":") for line in passwd_text.splitlines()) if len(f) > 3
        }
        groups = {
            f[0]: f for f in (line.split(":") for line in group_text.splitlines()) if len(f) > 2
        }
        if DEPLOY_USER in users:
            return int(users[DEPLOY_USER][2]), int(users[DEPLOY_USER][3])
        taken_uid = {int(f[2]) for f in users.values() if f[2].isdigit()}
        taken_gid = {int(f[2]) for f in groups.values() if f[2].isdigit()}
        uid = DEPLOY_UID
        while uid in taken_uid or uid in taken_gid:
            uid += 1
        return uid, uid

    def _prepare_etc(self, host: TestHost, uid: int, gid: int) -> None:
        """Fill ``root/etc`` (a copy of /etc) with what the host needs."""
        etc = host.root / "etc"
        _run(["cp", "-a", "/etc", str(etc)])
        for key in (etc / "ssh").glob("ssh_host_*"):
            key.unlink()

        # users: passwd, group, shadow, gshadow with our deploy (any old deploy line replaced)
        def edit(name: str, line: str) -> None:
            path = etc / name
            if not path.exists():
                return
            kept = [
                ln for ln in path.read_text().splitlines() if not ln.startswith(DEPLOY_USER + ":")
            ]
            st = path.stat()
            path.write_text("\n".join([*kept, line]) + "\n")
            os.chmod(path, st.st_mode & 0o7777)

        days = int(time.time() // 86400)
        edit(
            "passwd",
            f"{DEPLOY_USER}:x:{uid}:{gid}:fabdeploy test user:/home/{DEPLOY_USER}:/bin/bash",
        )
        edit("group", f"{DEPLOY_USER}:x:{gid}:")
        edit("shadow", f"{DEPLOY_USER}:*:{days}:0:99999:7:::")
        edit("gshadow", f"{DEPLOY_USER}:!::")
        _write(
            etc / "sudoers.d" / "fabdeploy-deploy",
            f"{DEPLOY_USER} ALL=(ALL:ALL) NOPASSWD:ALL\n",
            0o440,
        )
        _write(etc / "hostname", host.name + "\n")
        _write(
            etc / "hosts",
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.name}\n{host.address}\t{host.name}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n",
        )
        systemd = etc / "systemd" / "system"
        shutil.rmtree(systemd, ignore_errors=True)
        _mkdir(systemd)
        ssh = etc / "ssh"
        _keygen(ssh / "ssh_host_ed25519_key", f"root@{host.name}")
        sftp = "/usr/lib/openssh/sftp-server"
        _write(
            ssh / f"sshd_config.{host.name}",
            "\n".join(
                [
                    f"# fabdeploy hostkit: {host.name}",
                    f"ListenAddress {host.address}",
                    "Port 22",
                    "HostKey /etc/ssh/ssh_host_ed25519_key",
                    "PidFile /run/sshd.pid",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin no",
                    "UsePAM no",
                    "UseDNS no",
                    "AuthorizedKeysFile .ssh/authorized_keys",
                    "PrintMotd no",
                    "X11Forwarding no",
                    "AcceptEnv LANG LC_*",
                    "MaxStartups 100:30:200",
                    "MaxSessions 64",
                    f"Subsystem sftp {sftp}",
                    "",
                ]
            ),
        )

    def _start_netns(self, index: int) -> TestHost:
        t0 = time.monotonic()
        if self.subnet is None:
            self.subnet = self._pick_subnet()
        self._guard_subnet()
        net = ipaddress.ip_network(self.subnet)
        outer = str(net.network_address + 4 * index + 1)
        inner = str(net.network_address + 4 * index + 2)
        name = f"fdt-{self.run_id}-{index + 1}"
        host = TestHost(
            name=name,
            address=inner,
            port=22,
            user=DEPLOY_USER,
            root=self.workdir / "hosts" / name,
            pid=0,
            host_key_line="",
            mode="netns",
            netns=name,
            veth=f"fd{self.run_id}h{index + 1}",
            client_key=self.client_key,
            known_hosts=self.known_hosts,
        )
        self.hosts.append(host)  # recorded first: stop() cleans a half-started host too
        self.write_state()
        root = host.root
        if root.exists():
            shutil.rmtree(root)
        _mkdir(root, 0o755)
        systemctl, journalctl = self._tools()

        passwd, group = Path("/etc/passwd").read_text(), Path("/etc/group").read_text()
        uid, gid = self._deploy_ids(passwd, group)
        self._prepare_etc(host, uid, gid)
        pub = (root / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        host.host_key_line = f"{host.address} {pub[0]} {pub[1]}"

        for sub, mode in (
            ("srv", 0o755),
            ("home", 0o755),
            ("log", 0o755),
            ("run", 0o755),
            ("tmp", 0o1777),
        ):
            _mkdir(root / sub, mode)
        _mkdir(root / "lib-systemd-system", 0o755)
        _mkdir(root / "log" / "journal", 0o755)
        _mkdir(root / "run" / "sshd", 0o755)
        _mkdir(root / "run" / "lock", 0o1777)
        home = _mkdir(root / "home" / DEPLOY_USER, 0o755, (uid, gid))
        for skel in Path("/etc/skel").glob(".*"):
            if skel.is_file():
                shutil.copy2(skel, home / skel.name)
                os.chown(home / skel.name, uid, gid)
        _mkdir(home / ".ssh", 0o700, (uid, gid))
        client_pub = self.client_key.with_name(self.client_key.name + ".pub").read_text().strip()
        _write(home / ".ssh" / "authorized_keys", client_pub + "\n", 0o600, (uid, gid))

        mounts = [
            (root / "etc", "/etc"),
            (root / "srv", "/srv"),
            (root / "home", "/home"),
            (root / "log", "/var/log"),
            (root / "run", "/run"),
            (root / "tmp", "/tmp"),
            (root / "lib-systemd-system", "/usr/lib/systemd/system"),
            (systemctl, "/usr/bin/systemctl"),
            (journalctl, "/usr/bin/journalctl"),
        ]
        # A target that is an ancestor of the kit's files would hide them: mount it last.
        mounts.sort(key=lambda m: self.workdir.is_relative_to(m[1]))
        lines = [
            "#!/bin/bash",
            f"# fabdeploy hostkit bootstrap for {name}; runs as",
            f"#   ip netns exec {name} unshare -m -u --propagation private bash THIS",
            "set -eu",
            f"echo {name} > /proc/sys/kernel/hostname",
            *(f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}" for src, dst in mounts),
            f"exec {SSHD} -D -e -f /etc/ssh/sshd_config.{name}",
            "",
        ]
        script = root / "bootstrap.sh"
        _write(script, "\n".join(lines), 0o755)

        _run(["ip", "netns", "add", name])
        _run(
            ["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", name]
        )
        _run(["ip", "addr", "add", f"{outer}/30", "dev", host.veth])
        _run(["ip", "link", "set", host.veth, "up"])
        _run(["ip", "-n", name, "addr", "add", f"{inner}/30", "dev", "eth0"])
        _run(["ip", "-n", name, "link", "set", "eth0", "up"])
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

        with open(root / "log" / "sshd.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    name,
                    "unshare",
                    "--mount",
                    "--uts",
                    "--propagation",
                    "private",
                    "/bin/bash",
                    str(script),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd="/",
                env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"},
                start_new_session=True,
            )
        self._procs[name] = proc
        host.pid = proc.pid
        self.write_state()
        self._wait_for_port(host, proc)
        host.startup_seconds = round(time.monotonic() - t0, 3)
        self._write_known_hosts()
        self.write_state()
        return host

    def _wait_for_port(self, host: TestHost, proc: subprocess.Popen[bytes]) -> None:
        """Wait (at most PORT_WAIT s) until ``host``'s sshd accepts TCP connections."""
        if host.mode == "netns":  # never probe an address that would route off this machine
            route = _run(["ip", "-o", "route", "get", host.address]).stdout.split()
            if host.veth not in route:
                raise HostKitError(
                    f"{host.address} does not route via {host.veth}: {' '.join(route)}"
                )
        deadline = time.monotonic() + PORT_WAIT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _port_open(host.address, host.port, timeout=0.2):
                return
            time.sleep(0.01)
        log = ""
        with contextlib.suppress(OSError):
            log = (host.root / "log" / "sshd.log").read_text()[-2000:]
        state = (
            f"exited {proc.returncode}"
            if proc.poll() is not None
            else f"not listening after {PORT_WAIT}s"
        )
        raise HostKitError(f"sshd for {host.name} {state}; log:\n{log}")

    def _netns_pids(self, name: str) -> list[int]:
        if not Path(f"/run/netns/{name}").exists():
            return []
        proc = _run(["ip", "netns", "pids", name], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]

    def _owns_pid(self, host: TestHost, pid: int) -> bool:
        """Whether ``pid`` is still this host's process (not a reused pid)."""
        if not _alive(pid):
            return False
        try:
            if os.stat(f"/run/netns/{host.netns}").st_ino == os.stat(f"/proc/{pid}/ns/net").st_ino:
                return True
        except OSError:
            pass
        return _mentions(_cmdline(pid), host.name)

    def _guard_subnet(self) -> None:
        """Route the kit's /24 to "unreachable" while the kit lives.

        The hosts' /30 routes are more specific and win; any other address of the /24 (a typo,
        a host already stopped) fails at once with EHOSTUNREACH instead of going out through
        the default route to a network that is not ours. The route is also how kits in other
        processes see that this /24 is taken. ``stop()`` removes it.
        """
        assert self.subnet
        _RESERVED_SUBNETS.add(self.subnet)
        _run(["ip", "route", "replace", "unreachable", self.subnet])

    def _release_subnet(self) -> None:
        """Remove the kit's unreachable route (after every host's network is gone)."""
        if not self.subnet:
            return
        _RESERVED_SUBNETS.discard(self.subnet)
        if self.mode not in ("netns", "nspawn") or os.geteuid() != 0:
            return
        shown = _run(
            ["ip", "route", "show", "exact", self.subnet, "type", "unreachable"], check=False
        )
        if shown.stdout.strip():
            _run(["ip", "route", "del", "unreachable", self.subnet])

    def _stop_netns(self, host: TestHost) -> None:
        left = self._kill_netns_processes(host)
        self._remove_netns_network(host)
        if left:
            raise HostKitError(f"pids still alive after SIGKILL: {left}")

    def _kill_netns_processes(self, host: TestHost) -> list[int]:
        """Kill every process in the host's netns (and its recorded pid); return survivors."""
        pids = set(self._netns_pids(host.netns))
        if host.pid and self._owns_pid(host, host.pid):
            pids.add(host.pid)
        left = _terminate(pids)
        again = set(self._netns_pids(host.netns)) - pids  # anything forked meanwhile
        left += _terminate(again, grace=0.5)
        proc = self._procs.pop(host.name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
        return left

    def _remove_netns_network(self, host: TestHost) -> None:
        """Delete the host's namespace and its root-side veth (if still there)."""
        if Path(f"/run/netns/{host.netns}").exists():
            _run(["ip", "netns", "del", host.netns])
        if host.veth and Path(f"/sys/class/net/{host.veth}").exists():
            _run(["ip", "link", "del", host.veth], check=False)

    # --- nspawn (real systemd) ----------------------------------------------------------------

    def _start_nspawn(self, n: int, release: str) -> list[TestHost]:
        """Boot ``n`` containers of ``release`` at once; return them when all run."""
        t0 = time.monotonic()
        try:
            lower = rootfs.build(release)
        except rootfs.RootfsError as exc:
            raise NeedsRootError(f"no {release} root filesystem: {exc}") from exc
        if self.subnet is None:
            self.subnet = self._pick_subnet()
        self._guard_subnet()
        net = ipaddress.ip_network(self.subnet)
        client_pub = self.client_key.with_name(self.client_key.name + ".pub").read_text()
        started: list[TestHost] = []
        for _ in range(n):
            index = len(self.hosts)
            machine = f"fd{self.run_id}n{index + 1}"
            host = TestHost(
                name=f"fdt-{self.run_id}-{index + 1}",
                address=str(net.network_address + 4 * index + 2),
                port=22,
                user=DEPLOY_USER,
                root=self.workdir / "hosts" / f"fdt-{self.run_id}-{index + 1}",
                pid=0,
                host_key_line="",
                mode="nspawn",
                veth=nspawn.veth(machine),
                client_key=self.client_key,
                known_hosts=self.known_hosts,
                release=release,
                machine=machine,
            )
            self.hosts.append(host)  # recorded first: stop() cleans a half-started host too
            self.write_state()
            if host.root.exists() and not os.path.ismount(host.root / "fs"):
                shutil.rmtree(host.root)
            pub = nspawn.prepare(
                host.root,
                lower,
                hostname=host.name,
                address=host.address,
                prefix=30,
                client_pub=client_pub,
                user=DEPLOY_USER,
            )
            host.host_key_line = f"{host.address} {pub}"
            started.append(host)
        self._write_known_hosts()
        for host in started:
            self._boot_nspawn(host)
        for host in started:
            self._await_nspawn(host)
            host.startup_seconds = round(time.monotonic() - t0, 3)
        self.write_state()
        return started

    def _boot_nspawn(self, host: TestHost) -> None:
        proc = nspawn.launch(host.root, host.machine)
        self._procs[host.name] = proc
        host.supervisor = proc.pid
        host.pid = 0
        self.write_state()

    def _await_nspawn(self, host: TestHost) -> None:
        """Wait until ``host`` boots, has its address, sshd listens and systemd is running."""
        proc = self._procs[host.name]
        console = host.root / "console.log"
        outer = str(ipaddress.ip_address(host.address) - 1)
        try:
            host.pid = nspawn.wait_booted(proc, host.machine, outer, 30, console)
            self.write_state()
            route = _run(["ip", "-o", "route", "get", host.address]).stdout.split()
            if host.veth not in route:
                raise HostKitError(
                    f"{host.address} does not route via {host.veth}: {' '.join(route)}"
                )
            deadline = time.monotonic() + nspawn.BOOT_TIMEOUT
            while not _port_open(host.address, host.port, timeout=0.2):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise HostKitError(
                        f"sshd on {host.name} not listening:\n{nspawn._tail(console)}"
                    )
                time.sleep(0.02)
            nspawn.wait_running(host.pid, host.machine, console)
        except nspawn.NspawnError as exc:
            raise HostKitError(str(exc)) from exc
        versions = host.sh("systemctl --version | head -n 1; python3 --version").stdout.splitlines()
        host.systemd, host.python = [*versions, "", ""][:2]

    def reboot(self, host: TestHost) -> None:
        """Shut ``host`` down and boot it again with its files, as a server reboots."""
        if host.mode != "nspawn":
            raise HostKitError(f"{host.name}: only real-systemd hosts reboot (mode {host.mode})")
        left = nspawn.halt(host.supervisor, host.machine, self._procs.pop(host.name, None))
        if left:
            raise HostKitError(f"{host.name}: halting left {left}")
        self._boot_nspawn(host)
        self._await_nspawn(host)

    def _stop_nspawn(self, hosts: list[TestHost]) -> list[str]:
        """Halt ``hosts`` in parallel and unmount their overlays; return what was left."""

        def one(host: TestHost) -> list[str]:
            try:
                left = nspawn.halt(host.supervisor, host.machine, self._procs.pop(host.name, None))
                left += nspawn.unmount(host.root)
            except Exception as exc:  # keep going: stop as much as possible
                left = [str(exc)]
            return [f"{host.name}: {item}" for item in left]

        if not hosts:
            return []
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            return [item for items in pool.map(one, hosts) for item in items]

    # --- loopback ----------------------------------------------------------------------------

    def _start_loopback(self, index: int) -> TestHost:
        t0 = time.monotonic()
        me = pwd.getpwuid(os.getuid()).pw_name
        name = f"fdt-{self.run_id}-lo{index + 1}"
        root = self.workdir / "hosts" / name
        host = TestHost(
            name=name,
            address="127.0.0.1",
            port=0,
            user=me,
            root=root,
            pid=0,
            host_key_line="",
            mode="loopback",
            client_key=self.client_key,
            known_hosts=self.known_hosts,
        )
        self.hosts.append(host)
        self.write_state()
        if root.exists():
            shutil.rmtree(root)
        for sub in ("etc/ssh", "srv", "home", "log", "run", "tmp"):
            _mkdir(root / sub, 0o700 if sub == "etc/ssh" else 0o755)
        key = root / "etc" / "ssh" / "ssh_host_ed25519_key"
        pub = _keygen(key, f"{me}@{name}").split()
        authorized = root / "etc" / "ssh" / "authorized_keys"
        client_pub = self.client_key.with_name(self.client_key.name + ".pub").read_text().strip()
        _write(authorized, client_pub + "\n", 0o600)
        config = root / "etc" / "ssh" / "sshd_config"
        last_error: Exception | None = None
        for _attempt in range(5):
            host.port = _free_port()
            host.host_key_line = f"[{host.address}]:{host.port} {pub[0]} {pub[1]}"
            _write(
                config,
                "\n".join(
                    [
                        f"# fabdeploy hostkit (loopback): {name}",
                        "ListenAddress 127.0.0.1",
                        f"Port {host.port}",
                        f"HostKey {key}",
                        f"PidFile {root / 'run' / 'sshd.pid'}",
                        f"AuthorizedKeysFile {authorized}",
                        "StrictModes no",
                        "PubkeyAuthentication yes",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "PermitRootLogin prohibit-password",
                        f"AllowUsers {me}",
                        "UsePAM no",
                        "UseDNS no",
                        "PrintMotd no",
                        "Subsystem sftp /usr/lib/openssh/sftp-server",
                        "",
                    ]
                ),
                0o600,
            )
            argv = [SSHD, "-D", "-e", "-f", str(config)]
            if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
                # sshd as root wants its privilege separation dir /run/sshd: give it a private
                # /run in a private mount namespace rather than creating it on the machine.
                _mkdir(root / "run" / "sshd", 0o755)
                mount = (
                    f"mount --bind {shlex.quote(str(root / 'run'))} /run && exec {shlex.join(argv)}"
                )
                argv = ["unshare", "--mount", "--propagation", "private", "/bin/bash", "-c", mount]
            with open(root / "log" / "sshd.log", "ab") as log:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd="/",
                    start_new_session=True,
                )
            self._procs[name] = proc
            host.pid = proc.pid
            self.write_state()
            try:
                self._wait_for_port(host, proc)
            except HostKitError as exc:  # most likely the port was taken meanwhile: retry
                last_error = exc
                _terminate([proc.pid], grace=0.5)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=1)
                continue
            host.startup_seconds = round(time.monotonic() - t0, 3)
            self._write_known_hosts()
            self.write_state()
            return host
        raise HostKitError(f"loopback sshd did not start: {last_error}")

    def _stop_loopback(self, host: TestHost) -> None:
        config = str(host.root / "etc" / "ssh" / "sshd_config")
        if host.pid and _alive(host.pid) and config in _cmdline(host.pid):
            left = _terminate([*_descendants(host.pid), host.pid])
            if left:
                raise HostKitError(f"pids still alive after SIGKILL: {left}")
        proc = self._procs.pop(host.name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)

    # --- shared ------------------------------------------------------------------------------

    def _write_known_hosts(self) -> None:
        lines = [h.host_key_line for h in self.hosts if h.host_key_line]
        _write(self.known_hosts, "".join(line + "\n" for line in lines))


# --- CLI -------------------------------------------------------------------------------------


def _registry(base: Path) -> Path:
    return base / "registry.txt"


def _known_state_dirs(base: Path) -> list[Path]:
    """State dirs under ``base`` plus those ``up`` recorded in the registry."""
    dirs = [p.parent for p in sorted(base.glob(f"*/{STATE_FILE}"))]
    with contextlib.suppress(OSError):
        for line in _registry(base).read_text().splitlines():
            p = Path(line.strip())
            if line.strip() and (p / STATE_FILE).exists() and p not in dirs:
                dirs.append(p)
    return dirs


def _cmd_up(args: argparse.Namespace) -> int:
    if args.why_not_nspawn:
        reason = nspawn_unavailable_reason(args.release or rootfs.RELEASES[0])
        if reason:
            print(reason)
        return 1 if reason else 0
    base = Path(args.base)
    run_id = args.run_id or secrets.token_hex(2)
    state = Path(args.state) if args.state else base / run_id
    kit = HostKit(state, run_id=run_id, mode=args.mode, release=args.release)
    base.mkdir(parents=True, exist_ok=True)
    with open(_registry(base), "a") as reg:
        reg.write(f"{kit.workdir}\n")
    try:
        hosts = kit.start(args.hosts)
    except Exception as exc:
        print(f"hostkit: start failed: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            kit.stop()
        return 1
    (kit.workdir / "hosts.env").write_text(kit.hosts_env())
    kit.write_state()
    for host in hosts:
        print(f"{host.name} {host.address} {host.port}")
    print(f"# mode={kit.mode} state={kit.workdir} env={kit.workdir / 'hosts.env'}", file=sys.stderr)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    if args.all:
        dirs = _known_state_dirs(Path(args.base))
    elif args.state:
        dirs = [Path(args.state)]
    else:
        print("hostkit down: give --state DIR or --all", file=sys.stderr)
        return 2
    status = 0
    for d in dirs:
        try:
            kit = HostKit.load(d)
            kit.stop(purge=args.purge)
            print(f"stopped {d} ({', '.join(h.name for h in kit.hosts) or 'no hosts'})")
        except HostKitError as exc:
            print(f"hostkit down {d}: {exc}", file=sys.stderr)
            status = 1
    return status


def _cmd_list(args: argparse.Namespace) -> int:
    dirs = _known_state_dirs(Path(args.base))
    if not dirs:
        print(f"no hostkit state under {args.base}")
    for d in dirs:
        try:
            kit = HostKit.load(d)
        except HostKitError as exc:
            print(f"{d}: {exc}")
            continue
        running = [h for h in kit.hosts if _alive(h.supervisor or h.pid)]
        print(f"{d}  mode={kit.mode} hosts={len(kit.hosts)} running={len(running)}")
        for h in kit.hosts:
            print(
                f"  {h.name} {h.address} {h.port} pid={h.pid} {'up' if _alive(h.pid) else 'down'}"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.hostkit up|down|list``."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.hostkit", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--base", default=str(DEFAULT_BASE), help="where state dirs live [%(default)s]"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start hosts and leave them running")
    up.add_argument("--hosts", type=int, default=1, help="how many hosts [1]")
    up.add_argument("--state", help="state dir [BASE/RUN_ID]")
    up.add_argument("--run-id", help="short id used in names (default: random)")
    up.add_argument(
        "--mode",
        choices=["netns", "loopback", "nspawn"],
        help=f"default: ${MODE_ENV} or automatic (nspawn: real systemd)",
    )
    up.add_argument("--release", help="nspawn: the Debian release to boot [bookworm]")
    up.add_argument(
        "--why-not-nspawn", action="store_true", help="print why nspawn hosts cannot boot, and exit"
    )
    up.set_defaults(func=_cmd_up)
    down = sub.add_parser("down", help="stop the hosts recorded in a state dir")
    down.add_argument("--state", help="state dir written by `up`")
    down.add_argument("--all", action="store_true", help="every state dir `list` shows")
    down.add_argument("--purge", action="store_true", help="also delete the hosts' files")
    down.set_defaults(func=_cmd_down)
    lst = sub.add_parser("list", help="show known state dirs")
    lst.set_defaults(func=_cmd_list)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
