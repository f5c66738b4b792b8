"""Talking to hosts: quoting, host-prefixed output, the known_hosts policy, one-script runs.

Every remote command fabdeploy sends goes through a `Host`: it quotes what it embeds,
prefixes each line of output with the host's name (whole lines only, so parallel hosts
never interleave mid-line), masks secret values, and turns failures into a `HostError`
that names the host.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shlex
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

import paramiko
from fabric import Connection
from fabric.runners import Remote
from invoke.context import Context
from invoke.runners import Result

from . import config
from . import roles as role_hosts
from .config import Settings
from .errors import ConfigError, FabdeployError, HostError, detail

T = TypeVar("T")

#: The package's remote scripts and host-side Python files (``tasks/scripts/``), package data.
SCRIPTS = Path(__file__).resolve().parent / "scripts"
#: The library every shell script is sent with (`shell`): as_app, alive, current_release, kv,
#: healthy, probe, wait_healthy (docs/scripts.md).
LIBRARY = "lib.sh"


def script_file(name: str) -> str:
    """The text of ``tasks/scripts/<name>`` as it is (a ``.py`` file the host's Python runs)."""
    return (SCRIPTS / name).read_text(encoding="utf-8")


def library() -> str:
    """The text of ``scripts/lib.sh``: the shell functions every remote script may use."""
    return script_file(LIBRARY)


def shell(name: str) -> str:
    """The body `Host.script` runs for the remote script ``scripts/<name>.sh``: the library
    (`library`), then the script."""
    return library() + "\n" + script_file(f"{name}.sh")


def quote(value: object) -> str:
    """Quote ``value`` as one word for a POSIX shell."""
    return shlex.quote(str(value))


def bash_text(body: str, env: dict[str, object] | None = None) -> str:
    """The bash program `Host.script` runs: strict mode, ``env`` quoted in, then ``body``."""
    exports = "".join(f"{name}={quote(value)}\n" for name, value in (env or {}).items())
    return f"set -euo pipefail\n{exports}{body}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# --- output --------------------------------------------------------------------------------


class Output:
    """Where fabdeploy writes: one lock shared by every host's writer, secrets masked."""

    def __init__(
        self, out: IO[str] | None = None, err: IO[str] | None = None, mask: Iterable[str] = ()
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.lock = threading.Lock()
        self.mask = sorted({m for m in mask if len(m) >= 3}, key=len, reverse=True)

    def clean(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for secret in self.mask:
            text = text.replace(secret, "***")
        return text

    def line(self, host: str, text: str, *, err: bool = False) -> None:
        """Write whole lines of ``text``, each prefixed with ``[host]``."""
        stream = self.err if err else self.out
        lines = self.clean(text).splitlines() or [""]
        with self.lock:
            for line in lines:
                stream.write(f"[{host}] {line}\n" if host else f"{line}\n")
            stream.flush()

    def say(self, text: str) -> None:
        """Write a line that belongs to no host."""
        self.line("", text)


class LineWriter:
    """A file-like stream for invoke's runner: buffers to whole lines, then `Output.line`."""

    def __init__(self, output: Output, host: str, *, err: bool = False) -> None:
        self.output = output
        self.host = host
        self.err = err
        self.buffer = ""

    def write(self, data: str) -> int:
        self.buffer += data
        if "\n" in self.buffer:
            whole, _, self.buffer = self.buffer.rpartition("\n")
            self.output.line(self.host, whole, err=self.err)
        return len(data)

    def flush(self) -> None:
        """Invoke flushes after every write; only `close` emits a partial last line."""

    def close(self) -> None:
        if self.buffer:
            self.output.line(self.host, self.buffer, err=self.err)
            self.buffer = ""


# --- host keys -----------------------------------------------------------------------------


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


# --- connections ---------------------------------------------------------------------------


class Stoppable(Remote):
    """Fabric's remote runner, but Ctrl-C also closes the command's stdin (and fab waits for
    it to end): a command that stops when its stdin closes (``scripts/bounded.sh``: a
    migration, a hook's command) is then ended on the host, not left running. Other commands
    read no stdin and run to their end, as with Fabric's runner; a second Ctrl-C stops the
    wait."""

    def start(
        self, command: str, shell: str, env: dict[str, Any], timeout: int | None = None
    ) -> None:
        super().start(command, shell, env, timeout=timeout)
        self.context.running.add(self)

    def stop(self) -> None:
        self.context.running.discard(self)
        super().stop()

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        if not self.using_pty:
            self.close_input()
        super().send_interrupt(interrupt)

    def close_input(self) -> None:
        """Send EOF to the command's stdin (nothing when the channel is gone)."""
        with contextlib.suppress(Exception):
            self.channel.shutdown_write()


class HostConnection(Connection):
    """A Fabric connection whose commands run with `Stoppable`, so that `interrupt` can close
    the stdin of those running in other threads (Ctrl-C reaches only the main one)."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        kwargs["config"] = kwargs["config"].clone()  # its runner is this connection's own
        super().__init__(host, **kwargs)
        self.config.runners.remote = Stoppable
        self.running: set[Stoppable] = set()

    def interrupt(self) -> None:
        """Close the stdin of every command running on this connection."""
        for runner in list(self.running):
            runner.close_input()


# --- hosts ---------------------------------------------------------------------------------


class Host:
    """One server: a verified SSH connection plus quoting, prefixed output and clear errors."""

    def __init__(self, conn: Connection, settings: Settings, output: Output) -> None:
        self.conn = conn
        self.settings = settings
        self.output = output
        #: SSH connections opened and sessions (commands, SFTP) started: the cost of a command.
        self.connections = 0
        self.sessions = 0
        self.name = conn.host if conn.port == 22 else f"{conn.host}:{conn.port}"
        #: Kept open by `close` while idle: the `Command` that shares this host closes it.
        self.shared = False
        self.running = 0  # commands running now (threads may share the host)
        self.lock = threading.Lock()
        self.sftp_client: paramiko.SFTPClient | None = None

    def __repr__(self) -> str:
        return f"Host({self.name!r})"

    @property
    def app_user(self) -> str:
        """The user the app runs as: APP_USER, else the SSH user."""
        return self.settings.app_user or self.conn.user

    def say(self, text: str) -> None:
        """Print ``text`` prefixed with this host's name."""
        self.output.line(self.name, text)

    def open(self) -> None:
        """Connect now, turning SSH failures into one clear line naming the host."""
        if self.conn.is_connected:
            return
        try:
            self.conn.open()
            self.connections += 1
        except UnknownHostKey as exc:
            raise HostError(self.name, str(exc)) from None
        except paramiko.BadHostKeyException as exc:
            files = ", ".join(known_hosts_files(self.conn, self.settings))
            raise HostError(
                self.name,
                f"HOST KEY CHANGED: expected {exc.expected_key.get_name()} "
                f"{fingerprint(exc.expected_key)} (from {files}), host offered "
                f"{exc.key.get_name()} {fingerprint(exc.key)}. This may be an attack. If the "
                f"host was rebuilt, remove the old key with `ssh-keygen -R {exc.hostname}"
                f"{' -f ' + self.settings.known_hosts if self.settings.known_hosts else ''}` "
                "and trust the new one.",
            ) from None
        except paramiko.AuthenticationException as exc:
            raise HostError(self.name, f"SSH login as {self.conn.user!r} refused: {exc}") from None
        except (OSError, socket.timeout, paramiko.SSHException) as exc:
            raise HostError(self.name, f"cannot connect on port {self.conn.port}: {exc}") from None

    def run(
        self,
        command: str,
        *,
        sudo: bool = False,
        hide: bool = False,
        warn: bool = False,
        label: str | None = None,
        timeout: float | None = None,
        user: str | None = None,
    ) -> Result:
        """Run ``command`` (already quoted) on the host; a failure raises `HostError`.

        ``sudo`` runs it as root, ``user`` as that user (``sudo -n -u``; nothing when it is
        the SSH user already).
        """
        self.open()
        if sudo:
            command = f"sudo -n {command}"
        elif user and user != self.conn.user:
            command = f"sudo -n -u {quote(user)} {command}"
        out = LineWriter(self.output, self.name)
        err = LineWriter(self.output, self.name, err=True)
        kwargs: dict[str, Any] = {
            "warn": True,
            "hide": True,
            "in_stream": False,
            "timeout": timeout,
        }
        if not hide:
            kwargs.update(out_stream=out, err_stream=err, hide=False)
        with self.lock:
            self.sessions += 1
            self.running += 1
        try:
            result = self.conn.run(command, **kwargs)
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(self.name, f"{label or 'command'}: connection lost: {exc}") from None
        finally:
            with self.lock:
                self.running -= 1
            out.close()
            err.close()
        if result.failed and not warn:
            tail = self.output.clean((result.stderr or result.stdout).strip())[-2000:]
            detail = f": {tail}" if tail else ""
            raise HostError(
                self.name, f"{label or 'command'} failed (exit {result.exited}){detail}"
            )
        return result

    def script(
        self,
        body: str,
        *,
        sudo: bool = False,
        hide: bool = False,
        warn: bool = False,
        label: str | None = None,
        env: dict[str, object] | None = None,
        timeout: float | None = None,
        user: str | None = None,
    ) -> Result:
        """Run a bash script in one round trip; ``env`` values are quoted into it."""
        return self.run(
            f"bash -c {quote(bash_text(body, env))}",
            sudo=sudo,
            hide=hide,
            warn=warn,
            label=label,
            timeout=timeout,
            user=user,
        )

    def interrupt(self) -> None:
        """Ctrl-C for the commands running on this host in other threads: their stdin closes
        (a command under ``scripts/bounded.sh`` then stops on the host)."""
        stop = getattr(self.conn, "interrupt", None)
        if stop is not None:
            stop()

    def put(self, local: Path, remote: str, *, progress: bool = True) -> None:
        """Copy a local file to ``remote`` over SFTP, reporting progress on large files."""
        self.open()
        size = local.stat().st_size
        started = time.monotonic()
        reported = [0.0]

        def callback(sent: int, total: int) -> None:
            now = time.monotonic()
            if progress and total > 1 << 20 and now - reported[0] > 1:
                reported[0] = now
                self.say(f"upload {sent * 100 // total}% ({sent >> 10} of {total >> 10} KiB)")

        try:
            self.sftp().put(str(local), remote, callback=callback)
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(
                self.name, f"upload of {local.name} to {remote} failed: {exc}"
            ) from None
        if progress:
            seconds = time.monotonic() - started
            self.say(f"uploaded {local.name} ({size >> 10} KiB in {seconds:.1f}s)")

    def get(self, remote: str, local: Path) -> None:
        """Copy the host's file ``remote`` to ``local`` over SFTP."""
        self.open()
        try:
            self.sftp().get(remote, str(local))
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(self.name, f"download of {remote} failed: {exc}") from None

    def sftp(self) -> paramiko.SFTPClient:
        """This connection's SFTP session, started (and counted) on first use."""
        with self.lock:
            if self.sftp_client is None:
                self.sessions += 1
                self.sftp_client = self.conn.sftp()  # Fabric memoizes it until close
            return self.sftp_client

    def close(self) -> None:
        """A task is done with this host: close the SSH connection, unless the host is shared
        by the whole ``fab`` command (`Command`) and idle: then it stays open for the next task.

        A shared host is closed all the same while a command still runs on it (``logs -f``
        ends its streams this way).
        """
        with self.lock:
            keep = self.shared and not self.running
        if not keep:
            self.disconnect()

    def disconnect(self) -> None:
        """Close the SSH connection (and its SFTP session) now."""
        self.conn.close()
        with self.lock:
            self.sftp_client = None


def connection(c: Context, host: str, settings: Settings) -> Connection:
    """A Fabric connection to ``host`` honouring SSH_USER, SSH_PORT, SSH_KEY, -i and -S."""
    kwargs: dict[str, Any] = {"config": c.config, "connect_timeout": settings.connect_timeout}
    if "@" not in host and settings.ssh_user:
        kwargs["user"] = settings.ssh_user
    if not host.rsplit("]", 1)[-1].count(":") and settings.ssh_port != 22:
        kwargs["port"] = settings.ssh_port
    if settings.ssh_key:
        kwargs["connect_kwargs"] = {"key_filename": [settings.ssh_key]}
    return HostConnection(host, **kwargs)


def given_host(c: Connection) -> str:
    """The host string -H gave Fabric, with ``user@`` and ``:port`` only where they were given."""
    host = c.original_host
    if c.user != c.ssh_config.get("user", c.config.user):
        host = f"{c.user}@{host}"
    if c.port != int(c.ssh_config.get("port", c.config.port)):
        host = f"{host}:{c.port}"
    return host


def target_hosts(c: Context, settings: Settings) -> list[str]:
    """The host strings this command runs on: the one -H gave ``c``, else HOSTS."""
    if isinstance(c, Connection):
        return [given_host(c)]
    if not settings.hosts:
        raise FabdeployError(f"no hosts: set HOSTS in {settings.source} or pass -H host[,host...]")
    return list(settings.hosts)


class Command:
    """What the tasks of one ``fab`` command share: one `Host` (one SSH connection) per host
    string and environment, closed when the command ends, and how far a fleet got.

    Fabric runs a command's tasks one after the other (with -H, once per host, each with a
    fresh `Connection` that fabdeploy never opens); ``fab staging setup deploy`` connects to
    each host once. It lives in the invoke config (`command`), which Fabric hands every task
    of the command.
    """

    def __init__(self) -> None:
        self.hosts: dict[tuple[str, str], Host] = {}
        #: -H calls still to come of the task whose first call ran the whole fleet.
        self.fleet_covers = 0
        # at exit, or when no task can reach this object any more (a script's own Context)
        weakref.finalize(self, disconnect, self.hosts)

    def __copy__(self) -> Command:
        return self  # invoke copies config values at every merge: keep the one object

    def __deepcopy__(self, memo: dict[int, object]) -> Command:
        return self

    def host(self, c: Context, name: str, settings: Settings, output: Output) -> Host:
        """The shared `Host` for ``name`` in ``settings``'s environment, this task's
        ``output`` and settings in place."""
        key = (str(settings.source), name)
        found = self.hosts.get(key)
        if found is None:
            found = self.hosts[key] = Host(connection(c, name, settings), settings, output)
            found.shared = True
        found.settings, found.output = settings, output
        return found

    def close(self) -> None:
        """Close every connection (the command ended)."""
        disconnect(self.hosts)


def disconnect(hosts: dict[tuple[str, str], Host]) -> None:
    """Close the connections of ``hosts`` and forget them."""
    for host in hosts.values():
        with contextlib.suppress(Exception):  # at exit: nothing is left to report it to
            host.disconnect()
    hosts.clear()


def command(c: Context) -> Command:
    """This ``fab`` command's `Command`, made by its first task."""
    state = config.state(c)
    if state.get("command") is None:
        state["command"] = Command()
    return state["command"]


def hosts(
    c: Context,
    settings: Settings,
    output: Output | None = None,
    *,
    trust: bool = False,
    names: list[str] | None = None,
) -> list[Host]:
    """`Host` objects for ``names`` (default: this command's hosts), host key policy applied;
    a host an earlier task of this ``fab`` command connected to keeps its connection."""
    output = output or Output(mask=settings.secrets.values())
    shared = command(c)
    result = []
    for name in dict.fromkeys(target_hosts(c, settings) if names is None else names):
        host = shared.host(c, name, settings, output)
        apply_host_key_policy(host.conn, settings, output, trust=trust)
        result.append(host)
    return result


def each(
    items: list[T],
    work: Callable[[T], Any],
    limit: int,
    stop: Callable[[T], object] | None = None,
) -> list[tuple[T, Any, BaseException | None]]:
    """Run ``work`` on every item, ``limit`` at once; return (item, result, error) in order.

    Ctrl-C while items run in other threads calls ``stop`` on each (`Host.interrupt`), waits
    for them, then raises `KeyboardInterrupt`."""

    def guarded(item: T) -> tuple[T, Any, BaseException | None]:
        try:
            return item, work(item), None
        except (Exception, KeyboardInterrupt) as exc:  # reported per host by the caller
            return item, None, exc

    if len(items) <= 1 or limit <= 1:
        return [guarded(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(limit, len(items))) as pool:
        futures = [pool.submit(guarded, item) for item in items]
        try:
            return [future.result() for future in futures]
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            for item in items:
                if stop is not None:
                    stop(item)
            raise


def fab_hosts() -> list[str]:
    """Every host given to the running ``fab`` with -H/--hosts, in order ([] without -H, or
    when no ``fab`` command is running, e.g. a task called from Python).

    No task, `Connection` or config value carries them: Fabric's Executor reads them from
    the parsed core arguments of the program the ``fab`` script (and ``python -m fabric``)
    runs, ``fabric.main.program``, whose `Program.args` is public. Checked with Fabric 3.2.3
    and invoke 2.2.1; the one place fabdeploy asks.
    """
    from fabric import main

    try:
        value = main.program.args.hosts.value
    except (TypeError, AttributeError, KeyError):  # that program parsed no command line
        return []
    return [part for part in str(value or "").split(",") if part]


def check_key_file(settings: Settings) -> None:
    """SSH_KEY, when set, names a readable file: checked before any connection is opened."""
    key = settings.ssh_key
    if key and not (os.path.isfile(key) and os.access(key, os.R_OK)):
        what = "is not readable" if os.path.isfile(key) else "not found"
        raise ConfigError(f"{settings.where('SSH_KEY')}: key file {key} {what}")


def session(
    c: Context,
    *,
    trust: bool = False,
    fleet: bool = False,
    data_on_stdout: bool = False,
    roles: str = "",
) -> tuple[Settings, list[Host]]:
    """Load this command's settings, then its hosts with host keys checked (nothing opened yet).

    With ``data_on_stdout`` (``--json``) everything the hosts' output says goes to stderr, so
    stdout holds only the document the task prints.

    With ``fleet`` under ``fab -H a,b``, the task's first per-host call gets every -H host at
    once and its later calls get none (Fabric calls the task once per host, one call after the
    other; the fleet already covered them). The next task's first call starts its own fleet.

    ``roles`` (``--roles web,worker``) keeps the hosts that have one of those roles
    (`tasks.roles`).
    """
    settings = config.load(c)
    check_key_file(settings)
    mask = settings.secrets.values()
    output = Output(sys.stderr, sys.stderr, mask=mask) if data_on_stdout else Output(mask=mask)
    if fleet and isinstance(c, Connection):
        shared = command(c)
        if shared.fleet_covers:  # a later -H call of the task whose first call ran the fleet
            shared.fleet_covers -= 1
            return settings, []
        given = fab_hosts()
        shared.fleet_covers = max(len(given) - 1, 0)
        names = role_hosts.select(settings, given or target_hosts(c, settings), roles)
        return settings, hosts(c, settings, output, trust=trust, names=names)
    names = role_hosts.select(settings, target_hosts(c, settings), roles)
    return settings, hosts(c, settings, output, trust=trust, names=names)


def on_each_host(
    c: Context, what: str, work: Callable[[Host], object], found: list[Host] | None = None
) -> None:
    """Run ``work`` on every host of this command (or ``found``), PARALLEL at once; then close
    the connections (`Host.close`: a shared one stays open for the command's next task) and
    fail naming every host where ``what`` failed."""
    settings, targets = session(c) if found is None else (found[0].settings, found)
    try:
        done = each(targets, work, settings.parallel)
    finally:
        for host in targets:
            host.close()
    failed = [(host, error) for host, _, error in done if error is not None]
    for host, error in failed:
        if isinstance(error, KeyboardInterrupt):
            raise error
        host.output.line(host.name, detail(error), err=True)
    if failed:
        raise FabdeployError(f"{what} failed on {', '.join(h.name for h, _ in failed)}")
