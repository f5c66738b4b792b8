"""The deploy's steps up to the switch: preflight, lock, check, build, compare, test, upload,
install, migrate and smoke."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .. import roles
from ..build import archive, gitref, preflight, pyreq, testrun, wheels
from ..core.errors import FabdeployError
from ..host import converge, install, migrate, smoke
from ..host import facts as host_facts
from ..host.lockfile import LockedButFailed, take_lock
from ..host.releases import inventory_program, parse_inventory
from .noop import already_serving

if TYPE_CHECKING:
    from ..engine.flow import Flow
    from ..ssh.host import Host


def skip_test(flow: Flow) -> str:
    """Why the local test suite does not run this time ("" it runs)."""
    if flow.resume:
        return f"--resume: deploy {flow.id} tested revision {flow.resume.revision}"
    return "--skip-tests" if flow.skip_tests else ""


def has_migration(flow: Flow) -> bool:
    """Whether MIGRATE_COMMAND is set."""
    return bool(flow.settings.migrate_command.strip())


def migrate_hosts(flow: Flow) -> list[Host]:
    """The hosts MIGRATE_COMMAND runs on: the primary one, or every host (MIGRATE_ON=all)."""
    return migrate.hosts(flow.settings, flow.hosts, lambda host: host.name)


def companion_hosts(flow: Flow) -> list[Host]:
    """The hosts whose roles run companion processes."""
    return [h for h in flow.hosts if roles.companions_of(flow.settings, h.name)]


def locked_hosts(flow: Flow) -> list[Host]:
    """The hosts this command holds the lock of."""
    return list(flow.locked)


def lock_hosts(flow: Flow, host: Host) -> None:
    """Take the deploy lock on the host; in the same session learn what `check` needs."""
    body, env = learn_program(host)
    try:
        text = take_lock(host, flow.owner, break_lock=flow.break_lock, wait=flow.lock_wait, then=(body, env))  # fmt: skip
    except LockedButFailed:
        flow.locked.append(host)
        raise
    flow.locked.append(host)
    flow.learned[host.name] = text


def check_locally(flow: Flow) -> None:
    """The local preconditions that take no time: APP_DIR, requirements, git state; with
    ``--ref``, the ref's APP_DIR exported from git first (tests and build then use it)."""
    folder = Path(flow.summary_json or ".").resolve().parent
    if flow.summary_json and not (folder.is_dir() and os.access(folder, os.W_OK)):
        raise FabdeployError(f"--summary-json {flow.summary_json}: cannot write in {folder}")
    if flow.ref:
        flow.settings = gitref.export(flow.settings, flow.ref)
        flow.say(f"preflight: {flow.ref} is commit {flow.settings.revision}, exported from git")
    preflight.local(flow.settings, allow_dirty=flow.allow_dirty)
    warning = migrate.local_database_warning(flow.settings, [h.name for h in flow.hosts])
    if warning:
        flow.output.line("", f"warning: {warning}", err=True)


def run_tests(flow: Flow) -> None:
    """The app's own test suite, locally, in its test venv; a failure stops the deploy before
    any host changes (and leaves nothing for `--resume`)."""
    pyreq.require_local(flow.settings)  # the local Python satisfies the app's requirement
    try:
        testrun.run_local(flow.c, flow.settings, flow.output)
    except BaseException:
        for host in flow.hosts:
            flow.results[host.name] = f"not deployed, serving {flow.served.get(host.name) or 'nothing'}"  # fmt: skip
        raise
    flow.untested = False
    flow.save()  # the release passed its tests: from now on `deploy --resume` can finish it


def check_hosts(flow: Flow, host: Host) -> None:
    """The host was set up: its Python and wheel tags (for the packages and the venv hash),
    its releases and the one it serves (learned with the lock: no session of its own)."""
    text = flow.learned.pop(host.name)  # every list takes the lock first
    facts_text, _, found = text.partition("--- inventory\n")
    found, _, files = found.partition("--- setup files\n")
    facts = host_facts.parse_facts(host, facts_text)
    flow.facts[host.name] = facts
    flow.inventories[host.name] = parse_inventory(found)
    flow.served[host.name] = facts.current
    if flow.action != "rollback":  # a new release: its Python requirement, before any change
        pyreq.require_host(flow.settings, host.name, facts.python)
    python = facts.python.split(" (")[0]
    host.say(f"{python} ({facts.tags.name}); serving {facts.current or 'nothing yet'}")
    if flow.action == "deploy":  # a deploy converges setup's files, or refuses here
        drift = flow.drift[host.name] = converge.drift(host, converge.parse(files))
        if drift:
            host.say(f"setup's files: {drift.describe()}: the switch applies them")


def learn_program(host: Host) -> tuple[str, dict[str, object]]:
    """`setup.facts_program`, `releases.inventory_program`, then `converge.program` (setup's
    files as they are): one script, one session."""
    facts, facts_env = host_facts.facts_program(host)
    listing, listing_env = inventory_program(host)
    files, files_env = converge.program(host)
    body = f'{facts}\necho "--- inventory"\n{listing}\necho "--- setup files"\n{files}'
    return body, {**facts_env, **listing_env, **files_env}


def build_release(flow: Flow) -> None:
    """Build the release archive once, and its packages once per tag set of the hosts."""
    targets = {name: facts.tags for name, facts in flow.facts.items()}
    flow.build = archive.build(
        flow.settings,
        allow_dirty=flow.allow_dirty,
        targets=targets,
        say=flow.say,
        builder=wheels.host_builder(flow.hosts, targets),
        release=flow.resume.release if flow.resume else "",
    )
    if flow.resume and flow.build.revision != flow.resume.revision:
        raise FabdeployError(
            f"--resume: deploy {flow.id} shipped revision {flow.resume.revision}, this build is "
            f"revision {flow.build.revision}: no host was touched. Resume from that revision "
            f"(`{flow.settings.command(f'deploy --resume --ref {flow.resume.revision}')}`), or "
            "deploy this one without --resume"
        )


def compare_revisions(flow: Flow) -> None:
    """Stop here when every host serves this revision already (a no-op, nothing restarted)."""
    if already_serving(flow):
        flow.done = True
        return
    flow.untested = not skip_test(flow)  # recorded for --resume once the tests passed
    flow.save()  # from now on `deploy --resume` can finish it


def ship_release(flow: Flow, host: Host) -> None:
    """Ship the archive (and the packages, where the venv is missing) to ``.incoming``; with
    --resume, a host that has the release complete already keeps it."""
    assert flow.build is not None
    flow.release[host.name] = flow.build.release
    if flow.resume and flow.build.release in flow.inventories[host.name].releases:
        flow.reused.add(host.name)
        host.say(f"releases/{flow.build.release} is here already (deploy {flow.id}): reused")
        return
    flow.archives[host.name] = install.ship(host, flow.build, flow.facts[host.name])
    if host.name in flow.drift:
        converge.stage(host, flow.drift[host.name])  # put in place by the switch


def install_release(flow: Flow, host: Host) -> None:
    """Unpack ``releases/<name>``, give it its venv (reused when requirements, Python and tags
    match) and REVISION: one session."""
    assert flow.build is not None
    if host.name not in flow.reused:
        archives = flow.archives[host.name]
        install.install(host, flow.build, flow.facts[host.name], archives, flow.id)


def run_migrations(flow: Flow, host: Host) -> None:
    """MIGRATE_COMMAND in the new release, once per deploy (MIGRATE_ON=all: on every host),
    before any smoke check."""
    migrate.run(host, flow.release[host.name])


def smoke_test(flow: Flow, host: Host) -> None:
    """Import the WSGI target and serve the release on a side port until healthy."""
    if not roles.serves_web(flow.settings, host.name):
        host.say("smoke: no web process on this host (its roles run none)")
        return
    smoke.smoke(host, flow.release[host.name])
