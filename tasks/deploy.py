"""``fab deploy`` and ``fab rollback``: the deploy and rollback lists (`tasks.steps.lists`)
run by the one runner (`tasks.engine.runner`), with the summary at the end."""

from __future__ import annotations

import time

from invoke import task

from .engine.flow import Flow, Options
from .engine.runner import execute
from .engine.summary import reported
from .ssh import session
from .steps.lists import DEPLOY, ROLLBACK, known_points
from .steps.resuming import to_resume

FLEET_HELP = "kept for older scripts: -H hosts are one fleet by default now"


PER_HOST_HELP = "with -H a,b: Fabric's loop, one separate deploy per -H host, one after the other"


@task(
    help={
        "skip-tests": "do not run the app's test suite locally (says so)",
        "allow-dirty": "ship uncommitted changes of a git checkout (revision gets -dirty)",
        "break-lock": "remove another deploy's lock first (prints who held it; logged)",
        "lock-wait": "wait up to SECONDS for a held deploy lock instead of failing at once",
        "fleet": FLEET_HELP,
        "per-host": PER_HOST_HELP,
        "force": "deploy even when every host already serves this revision",
        "summary-json": "also write the final summary as JSON to this file (for CI)",
        "ref": "deploy this git tag, branch or commit (exported from git; the work tree is untouched)",
        "resume": "finish the last deploy: its release, to the hosts that do not serve it (only)",
        "roles": "deploy only the hosts of these roles (ROLE_<NAME>), comma-separated",
    }
)
def deploy(c, skip_tests=False, allow_dirty=False, break_lock=False, lock_wait=0, fleet=False, per_host=False, force=False, summary_json="", ref="", resume=False, roles=""):  # type: ignore[no-untyped-def]  # fmt: skip
    """Deploy the app: test, build, upload, switch behind a health check, clean up."""
    settings, hosts = session.session(c, fleet=fleet or not per_host, roles=roles)
    hosts, last = to_resume(settings, hosts) if resume and hosts else (hosts, None)
    if not hosts:
        return  # `fab -H a,b deploy`: this host was deployed with the fleet (or nothing to resume)
    asked = Options(skip_tests, allow_dirty, break_lock, force=force, lock_wait=float(lock_wait), summary_json=summary_json, ref=ref or (last.ref if last else ""), resume=last)  # fmt: skip
    flow = Flow.locking(c, settings, hosts, "deploy", asked)
    with reported(flow):
        execute(flow, DEPLOY, known_points())  # the steps below, with their hooks
    if flow.done or flow.build is None:
        return  # a no-op: every host serves this revision already
    flow.say(
        f"deployed {flow.build.release} (revision {flow.build.revision}) to "
        f"{len(hosts)} host(s) in {time.monotonic() - flow.started:.1f}s"
    )


@task(
    help={
        "to": "release to switch every host to (default: the one that served before `current`)",
        "release": "the same as --to (its older name)",
        "fleet": FLEET_HELP,
        "per-host": "with -H a,b: Fabric's loop, one separate rollback per -H host",
    }
)
def rollback(c, to="", release="", fleet=False, per_host=False):  # type: ignore[no-untyped-def]
    """Switch back to the release that served before the current one (or --to one), checked."""
    settings, hosts = session.session(c, fleet=fleet or not per_host)
    if not hosts:
        return
    flow = Flow.locking(c, settings, hosts, "rollback", Options(wanted=to or release))
    with reported(flow):
        execute(flow, ROLLBACK, known_points())
