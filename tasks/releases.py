"""Releases on a host: what is there, which one to roll back to, what cleanup removes,
and the audit trail in revisions.log."""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import remote
from .layout import Audit, Layout, Revision
from .remote import Host


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


def served_before(log: str, current: str, present: set[str]) -> str:
    """The release that served before ``current`` took over, as revisions.log tells it (its
    deploys and rollbacks that ended ok, in order), among the ``present`` ones; "" if none.

    After deploy A, deploy B, rollback to A, deploy C it is A: what served before C, not B,
    the release rolled away from.
    """
    served: list[str] = []
    for line in log.splitlines():
        audit = Audit.parse(line)
        ok = audit and audit.result == "ok" and audit.action in ("deploy", "rollback")
        if audit and ok and (not served or served[-1] != audit.release):
            served.append(audit.release)
    if current not in served:
        return ""
    before = served[: len(served) - 1 - served[::-1].index(current)]
    return next((r for r in reversed(before) if r != current and r in present), "")


@dataclass(frozen=True)
class Inventory:
    """The releases on a host, what `current` points to and which venv each release uses."""

    releases: dict[str, str]  # name -> venv digest ("" when none); complete releases only
    partial: list[str]  # release dirs without REVISION
    current: str
    venvs: list[str]
    log: str  # revisions.log

    def previous(self) -> str:
        """The rollback target: the release that served before the current one (revisions.log),
        still on the host; with no such record, the newest release older than current."""
        return served_before(self.log, self.current, set(self.releases)) or previous_release(
            list(self.releases), self.current
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
while IFS= read -r name; do
  if [ -n "$name" ]; then rm -rf -- "releases/$name"; fi
done <<< "$RELEASES"
while IFS= read -r name; do
  if [ -n "$name" ]; then rm -rf -- "venvs/$name" "venvs/.$name.lock"; fi
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
