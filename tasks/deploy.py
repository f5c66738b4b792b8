"""The deploy flow and rollback: a short list of named steps across the stages.

```
lock -> check -> test -> build -> upload -> install -> smoke -> switch -> cleanup -> record -> unlock
```

`deploy` reads like Capistrano's deploy.rake: each step is a function below, named after it,
taking the `Run` and (for host steps) one `Host`, so a fleet deploy can later run the prepare
steps across hosts in parallel and the switch in batches. For now hosts go one after the
other, each fully. ``test`` and ``build`` run once, locally.

Any failure before ``switch`` leaves the host serving what it served: the half-made release is
removed and a ``failed`` line recorded. ``switch`` itself puts the old release back when the
new one does not become healthy. The lock is released in a ``finally``; a lock left by a
``fab`` that died on this machine is recognised as stale and broken, saying so.
"""

from __future__ import annotations

import os
import secrets as _random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from invoke import task

from . import remote, run, setup, test, upload
from .config import Settings
from .errors import FabdeployError, HostError
from .layout import Audit, Layout, Revision
from .remote import Host, Output

STEPS = (
    "lock",
    "check",
    "test",
    "build",
    "upload",
    "install",
    "smoke",
    "switch",
    "cleanup",
    "record",
    "unlock",
)
LOCAL = "local"


# --- the lock ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockOwner:
    """Who holds a deploy lock (the ``.lock/owner`` file)."""

    user: str
    machine: str
    pid: int
    since: int  # epoch seconds, the host's clock
    token: str = ""

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
[ -d "$ROOT" ] || { echo "deploy root $ROOT is missing: run \\`fab setup\\` first" >&2; exit 3; }
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
            "`fab unlock` (or deploy --break-lock) removes the lock.",
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


# --- releases ------------------------------------------------------------------------------


def releases_to_remove(releases: list[str], current: str, previous: str, keep: int) -> list[str]:
    """Which releases cleanup removes: all but ``keep``, never ``current`` or ``previous``."""
    ordered = sorted(set(releases))
    kept = [r for r in (current, previous) if r and r in ordered]
    for name in reversed(ordered):
        if len(kept) >= keep:
            break
        if name not in kept:
            kept.append(name)
    return [r for r in ordered if r not in kept]


def previous_release(releases: list[str], current: str, good: set[str] | None = None) -> str:
    """The newest release older than ``current`` (among ``good`` ones when known), or ""."""
    older = [r for r in sorted(releases) if r < current and (good is None or r in good)]
    return older[-1] if older else ""


def good_releases(log: str) -> set[str] | None:
    """Releases revisions.log records as served successfully (None: the log records none)."""
    good = set()
    for line in log.splitlines():
        audit = Audit.parse(line)
        if audit and audit.result == "ok":
            good.add(audit.release)
    return good or None


@dataclass(frozen=True)
class Inventory:
    """The releases on a host, what `current` points to and which venv each release uses."""

    releases: dict[str, str]  # name -> venv digest ("" when none); complete releases only
    partial: list[str]  # release dirs without REVISION
    current: str
    venvs: list[str]
    log: str  # revisions.log

    def previous(self) -> str:
        """The rollback target: the newest release older than current that served well."""
        complete = list(self.releases)
        return previous_release(complete, self.current, good_releases(self.log)) or (
            previous_release(complete, self.current)
        )


def inventory(host: Host) -> Inventory:
    """List releases, venvs and revisions.log on ``host`` (one round trip)."""
    paths = Layout(host.settings.deploy_root)
    result = host.script(
        """
echo "current=$(readlink -- "$CURRENT" 2>/dev/null | sed 's#.*/##')"
shopt -s nullglob
for dir in "$RELEASES"/*/; do
  dir=${dir%/}
  venv=$(readlink -- "$dir/.venv" 2>/dev/null | sed 's#.*/##')
  if [ -f "$dir/REVISION" ]; then echo "release=${dir##*/} $venv"; else echo "partial=${dir##*/}"; fi
done
for dir in "$VENVS"/*/; do dir=${dir%/}; echo "venv=${dir##*/}"; done
echo "--log--"
tail -n 500 -- "$LOG" 2>/dev/null || true
""",
        env={
            "CURRENT": paths.current,
            "RELEASES": paths.releases,
            "VENVS": paths.venvs,
            "LOG": paths.revisions_log,
        },
        hide=True,
        label="list releases",
    )
    head, _, log = result.stdout.partition("--log--\n")
    releases: dict[str, str] = {}
    partial, venvs, current = [], [], ""
    for line in head.splitlines():
        key, _, value = line.partition("=")
        if key == "current":
            current = value
        elif key == "release":
            name, _, venv = value.partition(" ")
            releases[name] = venv
        elif key == "partial":
            partial.append(value)
        elif key == "venv":
            venvs.append(value)
    return Inventory(releases, partial, current, venvs, log)


def prune(host: Host, keep: int, protect: str = "") -> list[str]:
    """Keep ``keep`` releases (never current, its predecessor or ``protect``); drop unused venvs."""
    found = inventory(host)
    protected = protect or found.previous()
    names = list(found.releases) + found.partial
    doomed = releases_to_remove(names, found.current, protected, keep)
    kept_venvs = {found.releases[r] for r in found.releases if r not in doomed}
    unused = [v for v in found.venvs if v not in kept_venvs]
    if doomed or unused:
        paths = Layout(host.settings.deploy_root)
        host.script(
            """
cd -- "$ROOT"
while IFS= read -r name; do [ -n "$name" ] && rm -rf -- "releases/$name"; done <<< "$RELEASES"
while IFS= read -r name; do
  [ -n "$name" ] && rm -rf -- "venvs/$name" "venvs/.$name.lock"
done <<< "$VENVS"
""",
            env={"ROOT": paths.root, "RELEASES": "\n".join(doomed), "VENVS": "\n".join(unused)},
            user=host.app_user,
            hide=True,
            label="cleanup",
        )
    kept = len(names) - len(doomed)
    host.say(
        f"cleanup: kept {kept} release(s), removed {len(doomed)}"
        + (f" ({', '.join(doomed)})" if doomed else "")
        + (f" and {len(unused)} unused venv(s)" if unused else "")
    )
    return doomed


def read_revision(host: Host, release: str) -> str:
    """The revision in ``releases/<release>/REVISION`` ("" when unreadable)."""
    path = f"{Layout(host.settings.deploy_root).release(release)}/REVISION"
    text = host.run(f"cat {remote.quote(path)} 2>/dev/null || true", hide=True).stdout
    parsed = Revision.parse(text)
    return parsed.revision if parsed else ""


def append_audit(host: Host, audit: Audit) -> None:
    """Append one line to revisions.log."""
    host.script(
        'printf "%s\\n" "$LINE" >> "$LOG"',
        env={"LINE": audit.format(), "LOG": Layout(host.settings.deploy_root).revisions_log},
        user=host.app_user,
        hide=True,
        label="record",
    )


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- one run of the flow -------------------------------------------------------------------


@dataclass
class Run:
    """One deploy or rollback: its settings, hosts, options and what happened so far."""

    c: object
    settings: Settings
    hosts: list[Host]
    action: str = "deploy"
    skip_tests: bool = False
    allow_dirty: bool = False
    break_lock: bool = False
    owner: LockOwner = field(init=False)
    output: Output = field(init=False)
    build: upload.Build | None = None
    facts: dict[str, setup.Facts] = field(default_factory=dict)
    locked: list[Host] = field(default_factory=list)
    release: dict[str, str] = field(default_factory=dict)  # host -> release being deployed
    served: dict[str, str] = field(default_factory=dict)  # host -> release served before
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.owner = LockOwner(
            upload.local_user(), socket.gethostname(), os.getpid(), 0, _random.token_hex(8)
        )
        self.output = self.hosts[0].output if self.hosts else Output()

    def say(self, text: str) -> None:
        self.output.say(text)

    def timed(self, where: str, name: str, work: Callable[[], object]) -> object:
        started = time.monotonic()
        try:
            return work()
        finally:
            self.timings.setdefault(where, {})[name] = time.monotonic() - started

    def locally(self, name: str, step: Callable[[Run], object]) -> None:
        """Run a local step once."""
        self.say(f"-> {name}")
        self.timed(LOCAL, name, lambda: step(self))

    def on_each(self, name: str, step: Callable[[Run, Host], object]) -> None:
        """Run a host step on every host, one after the other."""
        for host in self.hosts:
            self.on(host, name, step)

    def on(self, host: Host, name: str, step: Callable[[Run, Host], object]) -> None:
        """Run a host step on one host."""
        host.say(f"-> {name}")
        self.timed(host.name, name, lambda: step(self, host))

    def table(self) -> str:
        return timing_table(self.timings)


def timing_table(timings: dict[str, dict[str, float]]) -> str:
    """Seconds per step (rows) and place (columns: local, then each host), with totals."""
    columns = list(timings)
    if not columns:
        return ""
    rows = (*STEPS[:2], "choose", *STEPS[2:])  # rollback's "choose" follows "check"
    steps = [s for s in rows if any(s in timings[c] for c in columns)]
    steps += sorted({s for c in columns for s in timings[c]} - set(steps))
    width = max(len(s) for s in [*steps, "step", "total"])
    widths = [max(len(c), 7) for c in columns]
    lines = ["step".ljust(width) + "".join(f"  {c:>{w}}" for c, w in zip(columns, widths))]
    for step in steps:
        cells = [f"{timings[c][step]:.2f}" if step in timings[c] else "" for c in columns]
        lines.append(step.ljust(width) + "".join(f"  {v:>{w}}" for v, w in zip(cells, widths)))
    totals = [f"{sum(timings[c].values()):.2f}" for c in columns]
    lines.append("total".ljust(width) + "".join(f"  {v:>{w}}" for v, w in zip(totals, widths)))
    return "\n".join(lines)


@contextmanager
def locked(run_: Run) -> Iterator[None]:
    """``lock`` on every host now, ``unlock`` on every host locked when the block ends."""
    try:
        run_.on_each("lock", lock_step)
        yield
    finally:
        for host in run_.locked:
            try:
                run_.on(host, "unlock", unlock_step)
            except FabdeployError as exc:
                host.output.line(host.name, f"unlock failed: {exc}", err=True)


# --- the steps -----------------------------------------------------------------------------


def lock_step(run_: Run, host: Host) -> None:
    """Take the deploy lock on the host."""
    take_lock(host, run_.owner, break_lock=run_.break_lock)
    run_.locked.append(host)


def check(run_: Run, host: Host) -> None:
    """The host was set up; learn its Python (for the venv hash) and current release."""
    facts = setup.check(host)
    run_.facts[host.name] = facts
    run_.served[host.name] = facts.current
    host.say(f"{facts.python.split(' (')[0]}; serving {facts.current or 'nothing yet'}")


def test_step(run_: Run) -> None:
    """The app's own test suite, locally; a failure stops the deploy before any host changes."""
    if run_.skip_tests:
        run_.say("test: skipped (--skip-tests)")
        return
    test.run_local(run_.c, run_.settings, run_.output)  # type: ignore[arg-type]


def build(run_: Run) -> None:
    """Build the release archive and wheelhouse once, for every host."""
    versions = {f.python_version for f in run_.facts.values()}
    run_.build = upload.build(
        run_.settings,
        allow_dirty=run_.allow_dirty,
        python_versions=versions,
        say=run_.say,
    )


def upload_step(run_: Run, host: Host) -> None:
    """Ship the archive, verify it, unpack ``releases/<name>``."""
    assert run_.build is not None
    archive = upload.ship(host, run_.build)
    run_.release[host.name] = run_.build.release
    upload.unpack(host, run_.build, archive)


def install(run_: Run, host: Host) -> None:
    """Give the release its venv (reused when requirements and Python match) and REVISION."""
    assert run_.build is not None
    upload.install(host, run_.build, run_.facts[host.name].python)


def smoke(run_: Run, host: Host) -> None:
    """Import the WSGI target and serve the release on a side port until healthy."""
    test.smoke(host, run_.release[host.name])


def switch(run_: Run, host: Host) -> None:
    """Point `current` at the release and hand over to it behind the health check."""
    run.switch(host, run_.release[host.name])


def cleanup(run_: Run, host: Host) -> None:
    """Keep KEEP_RELEASES releases (never current or the previous), drop unused venvs."""
    try:
        prune(host, run_.settings.keep_releases, run_.served.get(host.name, ""))
    except FabdeployError as exc:  # the new release serves: a failed cleanup is only a warning
        host.output.line(host.name, f"cleanup failed (the deploy stands): {exc}", err=True)


def record(run_: Run, host: Host, result: str = "ok") -> None:
    """Append a deploy (or rollback) line to revisions.log."""
    release = run_.release.get(host.name, "")
    revision = run_.build.revision if run_.build else read_revision(host, release)
    append_audit(
        host, Audit(utc_now(), run_.action, release, revision, upload.local_user(), result)
    )


def unlock_step(run_: Run, host: Host) -> None:
    """Release our deploy lock."""
    release_lock(host, run_.owner)


def undo(run_: Run, host: Host, step: str) -> None:
    """After a failure at ``step``: remove the unswitched release and record the failure."""
    release = run_.release.get(host.name)
    if not release:
        return
    try:
        if run.current_release(host) != release:
            upload.remove_release(host, release)
            host.say(
                f"removed the failed release {release}; still serving {run_.served.get(host.name) or 'nothing'}"
            )
        record(run_, host, "failed")
    except FabdeployError as exc:
        host.output.line(host.name, f"cleaning up after the failed {step}: {exc}", err=True)


def on_host(run_: Run, host: Host, steps: list[tuple[str, Callable[[Run, Host], object]]]) -> None:
    """Run ``steps`` on one host; on a failure undo what this deploy left there, re-raise."""
    current = ""
    try:
        for current, step in steps:
            run_.on(host, current, step)
    except BaseException:
        if current in ("upload", "install", "smoke", "switch"):
            undo(run_, host, current)
        raise


# --- tasks ---------------------------------------------------------------------------------


@task(
    help={
        "skip-tests": "do not run the app's test suite locally first (says so)",
        "allow-dirty": "ship uncommitted changes of a git checkout (revision gets -dirty)",
        "break-lock": "remove another deploy's lock first (prints who held it)",
    }
)
def deploy(c, skip_tests=False, allow_dirty=False, break_lock=False):  # type: ignore[no-untyped-def]
    """Deploy the app: test, build, upload, switch behind a health check, clean up."""
    settings, hosts = remote.session(c)
    run_ = Run(c, settings, hosts, "deploy", skip_tests, allow_dirty, break_lock)
    started = time.monotonic()
    try:
        with locked(run_):  # lock ... unlock
            run_.on_each("check", check)
            run_.locally("test", test_step)
            run_.locally("build", build)
            for host in hosts:
                on_host(
                    run_,
                    host,
                    [
                        ("upload", upload_step),
                        ("install", install),
                        ("smoke", smoke),
                        ("switch", switch),
                        ("cleanup", cleanup),
                        ("record", record),
                    ],
                )
    finally:
        if run_.build:
            run_.build.cleanup()
        run_.say(run_.table())
        for host in hosts:
            host.close()
    assert run_.build is not None
    run_.say(
        f"deployed {run_.build.release} (revision {run_.build.revision}) to "
        f"{len(hosts)} host(s) in {time.monotonic() - started:.1f}s"
    )


def choose_target(run_: Run, host: Host, wanted: str) -> None:
    """The release to roll back to: ``wanted``, or the one before `current`."""
    found = inventory(host)
    if wanted:
        if wanted not in found.releases:
            known = ", ".join(sorted(found.releases)) or "none"
            raise HostError(host.name, f"no complete release {wanted!r} (releases: {known})")
        if wanted == found.current:
            raise HostError(host.name, f"{wanted} is already the current release")
        target = wanted
    else:
        target = found.previous()
        if not target:
            raise HostError(
                host.name,
                f"no previous release to roll back to (current: {found.current or 'none'})",
            )
    run_.release[host.name] = target
    run_.served[host.name] = found.current
    host.say(f"rolling back from {found.current or 'nothing'} to {target}")


@task(help={"release": "release to switch to (default: the one before `current`)"})
def rollback(c, release=""):  # type: ignore[no-untyped-def]
    """Switch back to the previous (or a named) release and check its health."""
    settings, hosts = remote.session(c)
    run_ = Run(c, settings, hosts, "rollback")
    try:
        with locked(run_):
            run_.on_each("check", check)
            for host in hosts:
                run_.on(host, "choose", lambda r, h: choose_target(r, h, release))
                try:
                    run_.on(host, "switch", switch)
                except BaseException:
                    record(run_, host, "failed")
                    raise
                run_.on(host, "record", record)
    finally:
        run_.say(run_.table())
        for host in hosts:
            host.close()


@task
def unlock(c):  # type: ignore[no-untyped-def]
    """Break a stale deploy lock on the hosts (shows who held it and since when)."""
    _, hosts = remote.session(c)
    for host in hosts:
        held = release_lock(host, None)
        host.say(f"removed the deploy lock held by {held}" if held else "no deploy lock")
        host.close()


@task
def trust(c):  # type: ignore[no-untyped-def]
    """Connect once, show each new host key's fingerprint and record it in known_hosts."""
    _, hosts = remote.session(c, trust=True)
    for host in hosts:
        host.open()
        key = host.conn.client.get_transport().get_remote_server_key()
        host.say(f"host key {key.get_name()} {remote.fingerprint(key)} is trusted")
        host.close()
