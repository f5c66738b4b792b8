"""Talking to hosts: quoting, host-prefixed output, the known_hosts policy, one-script runs.

Every remote command fabdeploy sends goes through a `Host`: it quotes what it embeds,
prefixes each line of output with the host's name (whole lines only, so parallel hosts
never interleave mid-line), masks secret values, and turns failures into a `HostError`
that names the host.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
from fabric import Connection
from fabric.runners import Remote
from invoke.context import Context
from invoke.runners import Result

from ..core.errors import HostError
from ..core.output import LineWriter
from ..core.shell import bash_text, private_input, quote
from .hostkeys import UnknownHostKey, fingerprint, hop_of, hops, jump_label, known_hosts_files

if TYPE_CHECKING:
    from ..config import Settings
    from ..core.output import Output


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


class WholeInput:
    """A command's input for invoke's runner, given whole at the first read (invoke reads a
    stream that is not a terminal one byte per 10 ms), then at its end."""

    def __init__(self, text: str) -> None:
        self.text = text

    def read(self, size: int = -1) -> str:
        text, self.text = self.text, ""
        return text


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
        """The user the app runs as: APP_USER (by default a system user named APP_NAME)."""
        return self.settings.app_user or self.conn.user

    @property
    def app_is_deploy_user(self) -> bool:
        """Whether the app runs as the SSH user (APP_USER set to it: the explicit opt-in that
        `fab check` warns about, docs/security.md#ownership)."""
        return self.app_user == self.conn.user

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
            hop = hop_of(self.conn, exc.hostname)
            files = ", ".join(known_hosts_files(hop or self.conn, self.settings))
            raise HostError(
                self.name,
                (f"{jump_label(hop)}: " if hop else "")
                + f"HOST KEY CHANGED: expected {exc.expected_key.get_name()} "
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
        stdin: str = "",
    ) -> Result:
        """Run ``command`` (already quoted) on the host; a failure raises `HostError`.

        ``sudo`` runs it as root, ``user`` as that user (``sudo -n -u``; nothing when it is
        the SSH user already). ``stdin`` is sent as the command's input, then closed (without
        it the command's stdin stays open and empty).
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
            "in_stream": WholeInput(stdin) if stdin else False,
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
        private: dict[str, str] | None = None,
    ) -> Result:
        """Run a bash script in one round trip; ``env`` values are quoted into it (so they
        are in the argv of its ``bash -c``, which any user of the host can list, and in the
        journal when it runs through sudo); ``private`` values reach it as variables too,
        sent on its stdin, never in a command line (the deploy lock's token)."""
        private = private or {}
        return self.run(
            f"bash -c {quote(bash_text(body, env, private))}",
            sudo=sudo,
            hide=hide,
            warn=warn,
            label=label,
            timeout=timeout,
            user=user,
            stdin=private_input(private),
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
        """Close the SSH connection (and its SFTP session) now, and those to its ProxyJump
        hops (Fabric's `close` leaves them open)."""
        self.conn.close()
        for hop in hops(self.conn):
            hop.close()
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
    conn = HostConnection(host, **kwargs)
    for hop in hops(conn):  # ProxyJump: the hops wait no longer than the host
        hop.connect_timeout = hop.connect_timeout or settings.connect_timeout
    return conn


def given_host(c: Connection) -> str:
    """The host string -H gave Fabric, with ``user@`` and ``:port`` only where they were given."""
    host = c.original_host
    if c.user != c.ssh_config.get("user", c.config.user):
        host = f"{c.user}@{host}"
    if c.port != int(c.ssh_config.get("port", c.config.port)):
        host = f"{host}:{c.port}"
    return host
