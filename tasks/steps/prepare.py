"""The deploy's steps up to the switch: preflight, lock, check, build, compare, test, upload,
install, migrate and smoke."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..build import archive, gitref, preflight, pyreq, testrun, wheels
from ..config import roles
from ..config.project import fab_command
from ..core.errors import FabdeployError, HostError
from ..engine import summary
from ..host import converge, install, migrate, provision, smoke, sudoers
from ..host import facts as host_facts
from ..host.lockfile import LockedButFailed, take_lock
from ..host.releases import inventory_program, parse_inventory
from .noop import already_serving

if TYPE_CHECKING:
    from ..engine.flow import Flow
    from ..ssh.host import Host


def skip_test(flow: Flow) -> str:
    """Why the local test suite does not run this time ("" it runs)."""
    if flow.options.resume:
        return f"--resume: deploy {flow.id} tested revision {flow.options.resume.revision}"
    return "--skip-tests" if flow.options.skip_tests else ""


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
    assert flow.owner is not None  # (a list with a lock step locks: `Flow.locking`)
    body, env = learn_program(host)
    asked = flow.options
    try:
        text = take_lock(host, flow.owner, break_lock=asked.break_lock, wait=asked.lock_wait, then=(body, env))  # fmt: skip
    except LockedButFailed:
        flow.locked.append(host)
        raise
    flow.locked.append(host)
    flow.at(host).learned = text


def check_locally(flow: Flow) -> None:
    """The local preconditions that take no time: APP_DIR, requirements, git state; with
    ``--ref``, the ref's APP_DIR exported from git first (tests and build then use it)."""
    asked = flow.options
    folder = Path(asked.summary_json or ".").resolve().parent
    if asked.summary_json and not (folder.is_dir() and os.access(folder, os.W_OK)):
        raise FabdeployError(f"--summary-json {asked.summary_json}: cannot write in {folder}")
    if asked.ref:
        flow.settings = gitref.export(flow.settings, asked.ref)
        flow.say(f"preflight: {asked.ref} is commit {flow.settings.revision}, exported from git")
    preflight.local(flow.settings, allow_dirty=asked.allow_dirty)
    warning = migrate.local_database_warning(flow.settings, [h.name for h in flow.hosts])
    if warning:
        flow.output.line("", f"warning: {warning}", err=True)


def run_tests(flow: Flow) -> None:
    """The app's own test suite, locally, in its test venv; a failure stops the deploy before
    any host changes (and leaves nothing for `--resume`)."""
    pyreq.require_local(flow.settings)  # the local Python satisfies the app's requirement
    try:
        testrun.run_suite(flow.c, flow.settings, flow.output)
    except BaseException:
        for host in flow.hosts:
            flow.at(host).result = f"not deployed, serving {flow.at(host).served or 'nothing'}"
        raise
    flow.untested = False
    summary.save(flow)  # the release passed its tests: from now on `deploy --resume` can finish it


def check_hosts(flow: Flow, host: Host) -> None:
    """The host was set up: its Python and wheel tags (for the packages and the venv hash),
    its releases and the one it serves (learned with the lock: no session of its own)."""
    state = flow.at(host)
    text, state.learned = state.learned, ""  # every list takes the lock first
    facts_text, _, found = text.partition("--- inventory\n")
    found, _, files = found.partition("--- setup files\n")
    facts = host_facts.parse_facts(host, facts_text)
    state.facts, state.inventory = facts, parse_inventory(found)
    state.served = facts.current
    if flow.action != "rollback":  # a new release: its Python requirement, before any change
        pyreq.require_host(flow.settings, host.name, facts.python)
    python = facts.python.split(" (")[0]
    host.say(f"{python} ({facts.tags.name}); serving {facts.current or 'nothing yet'}")
    warning = provision.deploy_user_warning(host)
    if warning:
        host.output.line(host.name, f"warning: {warning}", err=True)
    changing: tuple[str, ...] = ()
    if flow.action == "deploy":  # a deploy converges setup's files, or refuses here
        drift = state.drift = converge.drift(host, converge.parse(files))
        changing = tuple(target.path for target in drift.files)
        if drift:
            host.say(f"setup's files: {drift.describe()}: the switch applies them")
            note = drift.secrets_note(flow.settings)
            if note:
                host.say(note)
    refused = sudoers.refused_for(host, facts, flow.action, changing)  # (sudo -n -l's answers)
    if refused:
        raise HostError(host.name, refused)


def learn_program(host: Host) -> tuple[str, dict[str, object]]:
    """`facts.facts_program`, `releases.inventory_program`, then `converge.program` (setup's
    files as they are): one script, one session."""
    facts, facts_env = host_facts.facts_program(host)
    listing, listing_env = inventory_program(host)
    files, files_env = converge.program(host)
    body = f'{facts}\necho "--- inventory"\n{listing}\necho "--- setup files"\n{files}'
    return body, {**facts_env, **listing_env, **files_env}


def build_release(flow: Flow) -> None:
    """Build the release archive once, and its packages once per tag set of the hosts."""
    targets = {name: s.facts.tags for name, s in flow.states.items() if s.facts}
    resume = flow.options.resume
    flow.build = archive.build(
        flow.settings,
        allow_dirty=flow.options.allow_dirty,
        targets=targets,
        say=flow.say,
        builder=wheels.host_builder(flow.hosts, targets),
        release=resume.release if resume else "",
    )
    if resume and flow.build.revision != resume.revision:
        raise FabdeployError(
            f"--resume: deploy {flow.id} shipped revision {resume.revision}, this build is "
            f"revision {flow.build.revision}: no host was touched. Resume from that revision "
            f"(`{fab_command(flow.settings, f'deploy --resume --ref {resume.revision}')}`), or "
            "deploy this one without --resume"
        )


def compare_revisions(flow: Flow) -> None:
    """Stop here when every host serves this revision already (a no-op, nothing restarted)."""
    if already_serving(flow):
        flow.done = True
        return
    flow.untested = not skip_test(flow)  # recorded for --resume once the tests passed
    summary.save(flow)  # from now on `deploy --resume` can finish it


def ship_release(flow: Flow, host: Host) -> None:
    """Ship the archive (and the packages, where the venv is missing) to ``.incoming``; with
    --resume, a host that has the release complete already keeps it."""
    assert flow.build is not None
    state = flow.at(host)
    assert state.facts is not None and state.inventory is not None
    state.release = flow.build.release
    if flow.options.resume and flow.build.release in state.inventory.releases:
        state.reused = True
        host.say(f"releases/{flow.build.release} is here already (deploy {flow.id}): reused")
        return
    state.archives = install.ship(host, flow.build, state.facts)
    if state.drift is not None:
        converge.stage(host, state.drift)  # put in place by the switch


def install_release(flow: Flow, host: Host) -> None:
    """Unpack ``releases/<name>``, give it its venv (reused when requirements, Python and tags
    match) and REVISION: one session."""
    assert flow.build is not None
    state = flow.at(host)
    if not state.reused:
        assert state.facts is not None
        install.install(host, flow.build, state.facts, state.archives, flow.id)


def run_migrations(flow: Flow, host: Host) -> None:
    """MIGRATE_COMMAND in the new release, once per deploy (MIGRATE_ON=all: on every host),
    before any smoke check."""
    migrate.migrate_release(host, flow.at(host).release)


def smoke_test(flow: Flow, host: Host) -> None:
    """Import the WSGI target and serve the release on a side port until healthy."""
    if not roles.serves_web(flow.settings, host.name):
        host.say("smoke: no web process on this host (its roles run none)")
        return
    smoke.smoke(host, flow.at(host).release)
