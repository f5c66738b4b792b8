"""The deploy lock: an atomic ``mkdir <root>/.lock`` holding who took it, from where, when,
why, for which deploy, and the token that releases it.

Commands take it on the primary host first and on the other hosts only once they hold it
there (`primary_first`, ``Step.primary``), and release it there last: the primary host decides
which command owns the fleet. A second deploy fails at once naming the holder, the lock's age
and its reason (a `fab lock`: who locked, since when and why), or with
``deploy --lock-wait SECONDS`` waits for it. A lock whose holder ran on this machine and is
gone is stale and broken automatically, saying so; any other lock is released only by its
token (the deploy that took it, or ``fab unlock`` after ``fab lock`` on this machine) or broken
on request (``fab unlock``, ``deploy --break-lock``). Every break is a line in revisions.log.

Tasks: ``fab lock --reason "..."`` holds the lock on every host until ``fab unlock``;
``fab lock.status`` shows who holds it.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config.project import fab_command
from ..core import kv, shell
from ..core.clock import human_utc, release_name, utc_now
from ..core.errors import HostError
from ..core.local import local_user, pid_alive
from ..core.paths import layout, local_state
from ..core.records import Audit
from ..ssh import fanout

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.fanout import Reply
    from ..ssh.host import Host


#: A script body and its environment (`shell.bash_text`), run in another script's session.
Program = tuple[str, dict[str, object]]


#: Work a command defers to the session that releases the lock: (label, body, env).
Deferred = tuple[str, str, dict[str, object]]


#: Seconds between two looks at a held lock while waiting for it (``--lock-wait``).
POLL = 1.0


@dataclass(frozen=True)
class LockOwner:
    """Who holds a deploy lock (the ``.lock/owner`` file)."""

    user: str
    machine: str
    pid: int  # 0: held by `fab lock` until `fab unlock`, not by a running process
    since: int  # epoch seconds, the host's clock
    token: str = ""
    reason: str = ""
    deploy_id: str = ""

    @classmethod
    def mine(cls, *, deploy_id: str = "", reason: str = "", held: bool = False) -> LockOwner:
        """This process (or, ``held``, nobody's process) as the owner of a lock it will take."""
        return cls(
            local_user(),
            socket.gethostname(),
            0 if held else os.getpid(),
            0,
            secrets.token_hex(8),
            " ".join(reason.split()),
            deploy_id or new_id(),
        )

    def format(self) -> str:
        return (
            f"user={self.user}\nmachine={self.machine}\npid={self.pid}\n"
            f"since={self.since}\ntoken={self.token}\n"
            + (f"reason={self.reason}\n" if self.reason else "")
            + (f"deploy_id={self.deploy_id}\n" if self.deploy_id else "")
        )

    @classmethod
    def parse(cls, text: str) -> LockOwner | None:
        """The owner file's text (`format`), or None when it does not parse."""
        values = kv.parse(text)
        if not values:
            return None
        try:
            return cls(
                user=values.get("user", "?"),
                machine=values.get("machine", "?"),
                pid=int(values.get("pid", "0")),
                since=int(values.get("since", "0")),
                token=values.get("token", ""),
                reason=values.get("reason", ""),
                deploy_id=values.get("deploy_id", ""),
            )
        except ValueError:
            return None


def describe_lock(owner: LockOwner | None, now: int) -> str:
    """``user@machine (pid N) for 1m05s`` — who holds a lock and for how long."""
    if owner is None:
        return "an unknown deploy (no readable owner file)"
    age = max(0, now - owner.since) if owner.since else 0
    minutes, seconds = divmod(age, 60)
    hours, minutes = divmod(minutes, 60)
    span = (
        f"{hours}h{minutes:02d}m"
        if hours
        else f"{minutes}m{seconds:02d}s"
        if minutes
        else f"{seconds}s"
    )
    held = f"pid {owner.pid}" if owner.pid else "`fab lock`"
    why = f': "{owner.reason}"' if owner.reason else ""
    return f"{owner.user} ({held} on {owner.machine}) for {span}{why}"


def new_id() -> str:
    """A new deploy id: the UTC time and a few random characters, the same on every host."""
    return f"{release_name()}-{secrets.token_hex(2)}"


def is_stale(owner: LockOwner | None, machine: str, alive: Callable[[int], bool]) -> bool:
    """A lock is stale when its holder ran on this machine and that process is gone (a lock
    `fab lock` holds has no process and is never stale)."""
    return owner is not None and owner.pid > 0 and owner.machine == machine and not alive(owner.pid)


def break_line(held: str, why: str) -> str:
    """The revisions.log line that records breaking the lock ``held`` describes."""
    return Audit(
        utc_now(), "break-lock", "", "", local_user(), "broken", f"{held} ({why})"
    ).format()


@dataclass(frozen=True)
class Attempt:
    """One try at the lock: taken, or who holds it (and the host's time); with ``then``, what
    the script run once the lock was taken printed (in the same session)."""

    acquired: bool
    holder: LockOwner | None = None
    now: int = 0
    then: str = ""


def _lock_script(
    host: Host, owner: LockOwner, force: str = "", then: Program | None = None
) -> Attempt:
    """One try at ``mkdir .lock`` (as the owner of the deploy root: the SSH user); ``force``
    (a break line) removes a held lock first. ``then`` runs right after in the same session
    when the lock was taken: a failure there raises `HostError`, the lock held. The owner
    file, which holds the token, goes on stdin (never in a command line)."""
    paths = layout(host.settings)
    body, env = then or ("", {})
    result = host.script(
        shell.shell("lock-then"),
        env={
            "APP_USER": host.app_user,
            "ROOT": paths.root,
            "LOCK": paths.lock,
            "FORCE": "yes" if force else "no",
            "AUDIT": force,
            "REVLOG": paths.revisions_log,
            "SETUP": fab_command(host.settings, "setup"),
            "LOCK_BODY": shell.script_file("lock.sh"),
            "THEN_PROGRAM": shell.bash_text(body, env) if then else "",
        },
        private={"OWNER": owner.format()},
        hide=True,
        warn=True,
        label="lock",
    )
    head, _, after = result.stdout.partition("--- then\n")
    lines = head.splitlines()
    if lines[:1] == ["acquired"]:
        if result.failed:
            tail = host.output.clean(result.stderr.strip())[-2000:]
            raise LockedButFailed(host.name, f"check failed (exit {result.exited}): {tail}")
        return Attempt(True, owner, 0, after)
    if result.failed:
        tail = host.output.clean(result.stderr.strip())[-2000:]
        raise HostError(host.name, f"lock failed (exit {result.exited}): {tail}")
    now = int(lines[1].partition("=")[2]) if len(lines) > 1 else 0
    return Attempt(False, LockOwner.parse("\n".join(lines[2:])), now)


class LockedButFailed(HostError):
    """The lock was taken, the work run with it in the same session failed (release it)."""


def take_lock(
    host: Host,
    owner: LockOwner,
    *,
    break_lock: bool = False,
    wait: float = 0,
    then: Program | None = None,
) -> str:
    """Take the deploy lock (``mkdir .lock``); a held lock fails at once naming its holder, or
    after ``wait`` seconds of waiting for it to be released. ``then`` (a script body and its
    env) runs once the lock is taken, in the same session; its output is returned."""
    deadline = time.monotonic() + wait
    waiting = False
    while True:
        tried = _lock_script(host, owner, then=then)
        if tried.acquired:
            return tried.then
        held = describe_lock(tried.holder, tried.now)
        if break_lock:
            host.say(f"breaking the deploy lock held by {held} (--break-lock)")
            why = "--break-lock"
        elif is_stale(tried.holder, owner.machine, pid_alive):
            host.say(
                f"the deploy lock held by {held} is stale: that fab is no longer running; "
                "breaking it"
            )
            why = "stale: its fab is gone"
        elif time.monotonic() < deadline:
            if not waiting:
                host.say(f"waiting up to {wait:.0f}s for the deploy lock held by {held}")
                waiting = True
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
            continue
        else:
            raise HostError(host.name, refusal(host.settings, tried.holder, held, wait))
        break
    tried = _lock_script(host, owner, break_line(held, why), then)
    if not tried.acquired:
        raise HostError(
            host.name,
            f"could not take the deploy lock from {describe_lock(tried.holder, tried.now)}",
        )
    return tried.then


def refusal(settings: Settings, holder: LockOwner | None, held: str, wait: float) -> str:
    """Why a command cannot take the lock: who holds it, since when and why; for a lock taken
    on purpose (`fab lock`) that it is one, for a deploy's that another deploy is running."""
    waited = f" (waited {wait:.0f}s)" if wait else ""
    since = f" since {human_utc(holder.since)}" if holder and holder.since else ""
    if holder is not None and holder.pid == 0:
        return (
            f"deploy lock held by {held}{since}{waited}: locked on purpose with `fab lock`, not "
            f"by a deploy. `{fab_command(settings, 'unlock')}` releases it once that work is done "
            "(`--lock-wait SECONDS` waits for it)."
        )
    deploy = f" (deploy id {holder.deploy_id})" if holder and holder.deploy_id else ""
    return (
        f"deploy lock held by {held}{waited}: another deploy is running{deploy}. If it is not, "
        f"`{fab_command(settings, 'unlock')}` removes the lock "
        f"(or `{fab_command(settings, 'deploy --break-lock')}`; "
        "`--lock-wait SECONDS` waits for it)."
    )


def read_lock(host: Host) -> tuple[LockOwner | None, int] | None:
    """Who holds the lock on ``host`` and the host's time (None: no lock)."""
    result = host.script(
        shell.shell("lock-status"), env=status_env(host), hide=True, label="lock status"
    )
    return parse_held(result.stdout)


def status_env(host: Host) -> dict[str, object]:
    return {"LOCK": layout(host.settings).lock}


def parse_held(text: str) -> tuple[LockOwner | None, int] | None:
    """The lock-status script's answer: (owner, the host's time), or None for no lock."""
    lines = text.splitlines()
    if lines[:1] != ["held"]:
        return None
    now = int(lines[1].partition("=")[2] or 0) if len(lines) > 1 else 0
    return LockOwner.parse("\n".join(lines[2:])), now


def held_json(reply: fanout.Reply) -> dict[str, object]:
    """One host's object in ``lock.status --json`` (docs/json.md); never the token."""
    found = None if reply.error else parse_held(reply.text)
    holder, now = found or (None, 0)
    since = holder.since if holder and holder.since else None
    return {
        "host": reply.host,
        "error": reply.error,
        "unreachable": reply.unreachable,
        "locked": None if reply.error else found is not None,
        "held_by": describe_lock(holder, now) if found else "",
        "user": holder.user if holder else "",
        "machine": holder.machine if holder else "",
        "pid": holder.pid if holder else None,
        "since": since,
        "age_seconds": max(0, now - since) if since else None,
        "reason": holder.reason if holder else "",
        "deploy_id": holder.deploy_id if holder else "",
    }


def release_lock(
    host: Host,
    owner: LockOwner | None = None,
    *,
    token: str = "",
    audit: str = "",
    first: Sequence[Deferred] = (),
) -> str:
    """Release the lock: ``owner``'s (its token), the one ``token`` names, or whoever's (neither
    given; ``audit`` is then the revisions.log line recording the break). Returns who held it.

    ``first``: work deferred to this session (a deploy's cleanup and record), run before the
    lock goes; each part's failure is printed as a warning, never fatal. All of it runs as
    the owner of the deploy root (the SSH user); the token goes on stdin."""
    paths = layout(host.settings)
    result = host.script(
        shell.shell("deferred") + shell.shell("unlock"),
        env={
            "APP_USER": host.app_user,
            "ROOT": paths.root,
            "LOCK": paths.lock,
            "AUDIT": audit,
            "REVLOG": paths.revisions_log,
            "DEFERRED": "\n".join(
                base64.b64encode(shell.bash_text(body, env).encode()).decode() + " " + label
                for label, body, env in first
            ),
        },
        private={"TOKEN": owner.token if owner else token},
        hide=True,
        label="unlock",
    )
    for line in result.stderr.splitlines():
        if line.startswith("warning: "):
            host.output.line(host.name, line, err=True)
    lines = result.stdout.splitlines()
    if lines[:1] == ["none"]:
        return ""
    now = int(lines[0].partition("=")[2] or 0)
    held = describe_lock(LockOwner.parse("\n".join(lines[1:])), now)
    if "kept=yes" in lines:
        host.say(f"the deploy lock is now held by {held}: left in place")
    return held


def saved_token(settings: Settings) -> str:
    """The token `fab lock` saved for this environment ("" when none)."""
    path = local_state(settings).lock_token
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""


def describe_held(holder: LockOwner | None, now: int) -> str:
    """`describe_lock`, and the id of the deploy (or `fab lock`) holding it."""
    deploy = f" (deploy id {holder.deploy_id})" if holder and holder.deploy_id else ""
    return describe_lock(holder, now) + deploy


def gather_held(hosts: list[Host], settings: Settings) -> list[Reply]:
    """Every host's lock file as it is (``scripts/lock-status.sh``; `parse_held` reads it)."""
    return fanout.ask(hosts, settings, shell.shell("lock-status"), status_env, "lock status")
