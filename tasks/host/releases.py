"""Releases on a host: what is there, which one to roll back to, what cleanup removes,
and the audit trail in revisions.log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core import shell
from ..core.paths import layout
from ..core.records import Audit, Revision

if TYPE_CHECKING:
    from ..ssh.host import Host


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


def inventory_program(host: Host) -> tuple[str, dict[str, object]]:
    """The script (``scripts/inventory.sh``) and env that list a host's `Inventory`."""
    paths = layout(host.settings)
    return shell.shell("inventory"), {
        "CURRENT": paths.current,
        "RELEASES": paths.releases,
        "VENVS": paths.venvs,
        "LOG": paths.revisions_log,
    }


def inventory(host: Host) -> Inventory:
    """List releases, venvs and revisions.log on ``host`` (one round trip)."""
    body, env = inventory_program(host)
    return parse_inventory(host.script(body, env=env, hide=True, label="list releases").stdout)


def parse_inventory(text: str) -> Inventory:
    """The `Inventory` in the output of ``scripts/inventory.sh``."""
    head, _, log = text.partition("--log--\n")
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


@dataclass(frozen=True)
class Pruning:
    """What a cleanup removes, and what it keeps."""

    releases: list[str]
    venvs: list[str]
    kept: int

    def line(self) -> str:
        """``cleanup: kept 5 release(s), removed 1 (R1) and 1 unused venv(s)``."""
        doomed = self.releases
        return (
            f"cleanup: kept {self.kept} release(s), removed {len(doomed)}"
            + (f" ({', '.join(doomed)})" if doomed else "")
            + (f" and {len(self.venvs)} unused venv(s)" if self.venvs else "")
        )


def never_served(found: Inventory) -> list[str]:
    """Releases older than current that revisions.log never records serving, though it records
    releases before them: left by a deploy that was interrupted or killed before its switch.
    No rollback goes to them; cleanup removes them without counting them as kept."""
    served = good_releases(found.log)
    if not served or not found.current:
        return []
    oldest = min(served)  # what the log's tail no longer covers is not judged
    names = [*found.releases, *found.partial]
    return sorted(r for r in names if r not in served and oldest < r < found.current)


def plan_prune(found: Inventory, keep: int, protect: str = "") -> Pruning:
    """Keep ``keep`` releases of ``found`` (never current, its predecessor or ``protect``) and
    the venvs they use; releases that never served (`never_served`) go, uncounted."""
    protected = protect or found.previous()
    leftovers = [r for r in never_served(found) if r != protected]
    names = [r for r in [*found.releases, *found.partial] if r not in leftovers]
    doomed = releases_to_remove(names, found.current, protected, keep)
    kept_venvs = {found.releases[r] for r in found.releases if r not in doomed + leftovers}
    unused = [v for v in found.venvs if v not in kept_venvs]
    return Pruning(sorted(leftovers + doomed), unused, len(names) - len(doomed))


def prune_program(host: Host, pruning: Pruning) -> tuple[str, dict[str, object]]:
    """The script (``scripts/prune.sh``, run as the deploy user, whose releases and venvs they
    are) removing what ``pruning`` says."""
    return shell.shell("prune"), {
        "ROOT": layout(host.settings).root,
        "RELEASES": "\n".join(pruning.releases),
        "VENVS": "\n".join(pruning.venvs),
    }


def prune(host: Host, keep: int, protect: str = "") -> list[str]:
    """Keep ``keep`` releases (never current, its predecessor or ``protect``); drop unused venvs."""
    pruning = plan_prune(inventory(host), keep, protect)
    if pruning.releases or pruning.venvs:
        body, env = prune_program(host, pruning)
        host.script(body, env=env, hide=True, label="cleanup")
    host.say(pruning.line())
    return pruning.releases


def read_revision(host: Host, release: str) -> str:
    """The revision in ``releases/<release>/REVISION`` ("" when unreadable)."""
    path = f"{layout(host.settings).release(release)}/REVISION"
    text = host.script(shell.shell("read-file"), env={"FILE": path}, hide=True).stdout
    parsed = Revision.parse(text)
    return parsed.revision if parsed else ""


def audit_program(host: Host, audit: Audit) -> tuple[str, dict[str, object]]:
    """The script appending ``audit`` to revisions.log (as the owner of the deploy root, the
    SSH user: ``scripts/record.sh``)."""
    paths = layout(host.settings)
    return shell.shell("record"), {
        "LINE": audit.format(),
        "LOG": paths.revisions_log,
        "ROOT": paths.root,
        "APP_USER": host.app_user,
    }


def append_audit(host: Host, audit: Audit) -> None:
    """Append one line to revisions.log."""
    body, env = audit_program(host, audit)
    host.script(body, env=env, hide=True, label="record")
