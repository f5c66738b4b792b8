"""The deploy lock: an atomic ``mkdir <root>/.lock`` holding who took it, from where, when.

A second deploy fails at once naming the holder and the lock's age. A lock whose holder ran on
this machine and is gone is stale and broken automatically, saying so; any other lock is
broken only on request (``fab unlock``, ``deploy --break-lock``). A token in the owner file
makes sure a deploy only ever removes its own lock.
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

from .errors import HostError
from .layout import Layout
from .remote import Host


@dataclass(frozen=True)
class LockOwner:
    """Who holds a deploy lock (the ``.lock/owner`` file)."""

    user: str
    machine: str
    pid: int
    since: int  # epoch seconds, the host's clock
    token: str = ""

    @classmethod
    def mine(cls) -> LockOwner:
        """This process, as the owner of a lock it is about to take."""
        return cls(local_user(), socket.gethostname(), os.getpid(), 0, secrets.token_hex(8))

    def format(self) -> str:
        return (
            f"user={self.user}\nmachine={self.machine}\npid={self.pid}\n"
            f"since={self.since}\ntoken={self.token}\n"
        )

    @classmethod
    def parse(cls, text: str) -> LockOwner | None:
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        try:
            return cls(
                user=values.get("user", "?"),
                machine=values.get("machine", "?"),
                pid=int(values.get("pid", "0")),
                since=int(values.get("since", "0")),
                token=values.get("token", ""),
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
    return f"{owner.user} (pid {owner.pid} on {owner.machine}) for {span}"


def local_user() -> str:
    """Who is deploying: local ``user@machine``."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(owner: LockOwner | None, machine: str, alive: Callable[[int], bool]) -> bool:
    """A lock is stale when its holder ran on this machine and that process is gone."""
    return owner is not None and owner.machine == machine and not alive(owner.pid)


_LOCK = """
[ -d "$ROOT" ] || { echo "deploy root $ROOT is missing: run \\`$SETUP\\` first" >&2; exit 3; }
if [ "$FORCE" = yes ]; then rm -rf -- "$LOCK"; fi
if mkdir -- "$LOCK" 2>/dev/null; then
  printf '%s' "$OWNER" | sed "s/^since=.*/since=$(date +%s)/" > "$LOCK/owner"
  echo acquired
else
  echo held
  echo "now=$(date +%s)"
  cat -- "$LOCK/owner" 2>/dev/null || true
fi
"""


def _lock_script(host: Host, owner: LockOwner, force: bool) -> tuple[bool, LockOwner | None, int]:
    paths = Layout(host.settings.deploy_root)
    result = host.script(
        _LOCK,
        env={
            "ROOT": paths.root,
            "LOCK": paths.lock,
            "OWNER": owner.format(),
            "FORCE": "yes" if force else "no",
            "SETUP": host.settings.command("setup"),
        },
        user=host.app_user,
        hide=True,
        label="lock",
    )
    lines = result.stdout.splitlines()
    if lines[:1] == ["acquired"]:
        return True, owner, 0
    now = int(lines[1].partition("=")[2]) if len(lines) > 1 else 0
    return False, LockOwner.parse("\n".join(lines[2:])), now


def take_lock(host: Host, owner: LockOwner, *, break_lock: bool = False) -> None:
    """Take the deploy lock (``mkdir .lock``); a held lock fails at once naming its holder."""
    acquired, holder, now = _lock_script(host, owner, False)
    if acquired:
        return
    held = describe_lock(holder, now)
    if break_lock:
        host.say(f"breaking the deploy lock held by {held} (--break-lock)")
    elif is_stale(holder, owner.machine, pid_alive):
        host.say(
            f"the deploy lock held by {held} is stale: that fab is no longer running; breaking it"
        )
    else:
        raise HostError(
            host.name,
            f"deploy lock held by {held}: another deploy is running. If it is not, "
            f"`{host.settings.command('unlock')}` removes the lock "
            f"(or `{host.settings.command('deploy --break-lock')}`).",
        )
    acquired, holder, now = _lock_script(host, owner, True)
    if not acquired:
        raise HostError(
            host.name, f"could not take the deploy lock from {describe_lock(holder, now)}"
        )


def release_lock(host: Host, owner: LockOwner | None = None) -> str:
    """Release the lock: ours (``owner``'s token), or whoever's (None). Returns who held it."""
    paths = Layout(host.settings.deploy_root)
    result = host.script(
        """
[ -d "$LOCK" ] || { echo "none"; exit 0; }
echo "now=$(date +%s)"
cat -- "$LOCK/owner" 2>/dev/null || true
if [ -z "$TOKEN" ] || grep -qx "token=$TOKEN" "$LOCK/owner" 2>/dev/null; then
  rm -rf -- "$LOCK"
else
  echo "kept=yes"
fi
""",
        env={"LOCK": paths.lock, "TOKEN": owner.token if owner else ""},
        user=host.app_user,
        hide=True,
        label="unlock",
    )
    lines = result.stdout.splitlines()
    if lines[:1] == ["none"]:
        return ""
    now = int(lines[0].partition("=")[2] or 0)
    held = describe_lock(LockOwner.parse("\n".join(lines[1:])), now)
    if "kept=yes" in lines:
        host.say(f"the deploy lock is now held by {held}: left in place")
    return held
