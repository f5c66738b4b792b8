"""The steps at the end: cleanup and record (sent with ``unlock``), unlock, and ``ready``
for ``upload.release``."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..config.project import fab_command
from ..core import local, shell
from ..core.clock import utc_now
from ..core.records import Audit
from ..host import converge, install
from ..host.lockfile import release_lock
from ..host.releases import append_audit, audit_program, plan_prune, prune_program, read_revision

if TYPE_CHECKING:
    from ..engine.flow import Flow
    from ..ssh.host import Host


def plan_cleanup(flow: Flow, host: Host) -> None:
    """Keep KEEP_RELEASES releases (never current or the previous), drop unused venvs (sent
    with ``unlock``; a failure there is a warning: the new release serves)."""
    state = flow.at(host)
    found = state.inventory  # as the lock found it, plus the release switched to
    assert found is not None
    release = state.release
    if release:
        releases, venvs = dict(found.releases), list(found.venvs)
        if flow.build and release not in releases:  # the one just installed
            assert state.facts is not None  # (learned by `check`)
            digest = install.facts_digest(flow.build, state.facts)
            releases[release] = digest
            venvs += [] if digest in venvs else [digest]
        found = replace(found, releases=releases, venvs=venvs, current=release)
    pruning = plan_prune(found, flow.settings.keep_releases, state.served)
    if pruning.releases or pruning.venvs:
        flow.defer(host, "cleanup", *prune_program(host, pruning))
    host.say(pruning.line())
    files = state.drift
    if files and files.applied:  # the copies of setup's files of before: no longer needed
        body, env = converge.script(host, files, "forget")
        flow.defer(host, "cleanup", shell.library() + "\n" + body, env)


def record_result(flow: Flow, host: Host, result: str = "ok") -> None:
    """Append a deploy (or rollback) line to revisions.log (sent with ``unlock``; after a
    failure, at once)."""
    release = flow.at(host).release
    revision = flow.build.revision if flow.build else read_revision(host, release)
    line = Audit(utc_now(), flow.action, release, revision, local.local_user(), result, "", flow.id)
    if result == "ok" and host in flow.locked:
        flow.defer(host, "record", *audit_program(host, line))
    else:
        append_audit(host, line)


def unlock_hosts(flow: Flow, host: Host) -> None:
    """Release our deploy lock (after the cleanup and record sent with it)."""
    assert flow.owner is not None  # (a list with an unlock step locks: `Flow.locking`)
    state = flow.at(host)
    deferred, state.deferred = state.deferred, []
    release_lock(host, flow.owner, first=deferred)


def say_ready(flow: Flow, host: Host) -> None:
    """Say the release is installed and how to switch to it."""
    assert flow.build is not None
    switch = fab_command(flow.settings, f"rollback --release {flow.build.release}")
    host.say(f"release {flow.build.release} ready, not switched: `{switch}` switches to it")
