"""The steps at the end: cleanup and record (sent with ``unlock``), unlock, and ``ready``
for ``upload.release``."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..core import local, shell
from ..core.clock import utc_now
from ..core.records import Audit
from ..host import converge, install
from ..host.lockfile import release_lock
from ..host.releases import append_audit, audit_program, plan_prune, prune_program, read_revision

if TYPE_CHECKING:
    from ..engine.flow import Run
    from ..ssh.host import Host


def plan_cleanup(run_: Run, host: Host) -> None:
    """Keep KEEP_RELEASES releases (never current or the previous), drop unused venvs (sent
    with ``unlock``; a failure there is a warning: the new release serves)."""
    found = run_.inventories[host.name]  # as the lock found it, plus the release switched to
    release = run_.release.get(host.name, "")
    if release:
        releases, venvs = dict(found.releases), list(found.venvs)
        if run_.build and release not in releases:  # the one just installed
            digest = install.facts_digest(run_.build, run_.facts[host.name])
            releases[release] = digest
            venvs += [] if digest in venvs else [digest]
        found = replace(found, releases=releases, venvs=venvs, current=release)
    pruning = plan_prune(found, run_.settings.keep_releases, run_.served.get(host.name, ""))
    if pruning.releases or pruning.venvs:
        run_.defer(host, "cleanup", *prune_program(host, pruning))
    host.say(pruning.line())
    files = run_.drift.get(host.name)
    if files and files.applied:  # the copies of setup's files of before: no longer needed
        body, env = converge.script(host, files, "forget")
        run_.defer(host, "cleanup", shell.library() + "\n" + body, env)


def record_result(run_: Run, host: Host, result: str = "ok") -> None:
    """Append a deploy (or rollback) line to revisions.log (sent with ``unlock``; after a
    failure, at once)."""
    release = run_.release.get(host.name, "")
    revision = run_.build.revision if run_.build else read_revision(host, release)
    line = Audit(utc_now(), run_.action, release, revision, local.local_user(), result, "", run_.id)
    if result == "ok" and host in run_.locked:
        run_.defer(host, "record", *audit_program(host, line))
    else:
        append_audit(host, line)


def unlock_hosts(run_: Run, host: Host) -> None:
    """Release our deploy lock (after the cleanup and record sent with it)."""
    release_lock(host, run_.owner, first=run_.deferred.pop(host.name, []))


def say_ready(run_: Run, host: Host) -> None:
    """Say the release is installed and how to switch to it."""
    assert run_.build is not None
    switch = run_.settings.command(f"rollback --release {run_.build.release}")
    host.say(f"release {run_.build.release} ready, not switched: `{switch}` switches to it")
