"""The deploy's steps up to the switch: preflight, lock, check, build, compare, test, upload,
install, migrate and smoke."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..build import archive, gitref, preflight, pyreq, testrun, wheels
from ..config import roles
from ..core.errors import FabdeployError
from ..host import converge, install, migrate, smoke
from ..host import facts as host_facts
from ..host.lockfile import LockedButFailed, take_lock
from ..host.releases import inventory_program, parse_inventory
from .noop import already_serving

if TYPE_CHECKING:
    from ..engine.flow import Run
    from ..ssh.host import Host


def skip_test(run_: Run) -> str:
    """Why the local test suite does not run this time ("" it runs)."""
    if run_.resume:
        return f"--resume: deploy {run_.id} tested revision {run_.resume.revision}"
    return "--skip-tests" if run_.skip_tests else ""


def has_migration(run_: Run) -> bool:
    """Whether MIGRATE_COMMAND is set."""
    return bool(run_.settings.migrate_command.strip())


def migrate_hosts(run_: Run) -> list[Host]:
    """The hosts MIGRATE_COMMAND runs on: the primary one, or every host (MIGRATE_ON=all)."""
    return migrate.hosts(run_.settings, run_.hosts, lambda host: host.name)


def companion_hosts(run_: Run) -> list[Host]:
    """The hosts whose roles run companion processes."""
    return [h for h in run_.hosts if roles.companions_of(run_.settings, h.name)]


def locked_hosts(run_: Run) -> list[Host]:
    """The hosts this command holds the lock of."""
    return list(run_.locked)


def lock_hosts(run_: Run, host: Host) -> None:
    """Take the deploy lock on the host; in the same session learn what `check` needs."""
    body, env = learn_program(host)
    try:
        text = take_lock(host, run_.owner, break_lock=run_.break_lock, wait=run_.lock_wait, then=(body, env))  # fmt: skip
    except LockedButFailed:
        run_.locked.append(host)
        raise
    run_.locked.append(host)
    run_.learned[host.name] = text


def check_locally(run_: Run) -> None:
    """The local preconditions that take no time: APP_DIR, requirements, git state; with
    ``--ref``, the ref's APP_DIR exported from git first (tests and build then use it)."""
    folder = Path(run_.summary_json or ".").resolve().parent
    if run_.summary_json and not (folder.is_dir() and os.access(folder, os.W_OK)):
        raise FabdeployError(f"--summary-json {run_.summary_json}: cannot write in {folder}")
    if run_.ref:
        run_.settings = gitref.export(run_.settings, run_.ref)
        run_.say(f"preflight: {run_.ref} is commit {run_.settings.revision}, exported from git")
    preflight.local(run_.settings, allow_dirty=run_.allow_dirty)
    warning = migrate.local_database_warning(run_.settings, [h.name for h in run_.hosts])
    if warning:
        run_.output.line("", f"warning: {warning}", err=True)


def run_tests(run_: Run) -> None:
    """The app's own test suite, locally, in its test venv; a failure stops the deploy before
    any host changes (and leaves nothing for `--resume`)."""
    pyreq.require_local(run_.settings)  # the local Python satisfies the app's requirement
    try:
        testrun.run_suite(run_.c, run_.settings, run_.output)
    except BaseException:
        for host in run_.hosts:
            run_.results[host.name] = f"not deployed, serving {run_.served.get(host.name) or 'nothing'}"  # fmt: skip
        raise
    run_.untested = False
    run_.save()  # the release passed its tests: from now on `deploy --resume` can finish it


def check_hosts(run_: Run, host: Host) -> None:
    """The host was set up: its Python and wheel tags (for the packages and the venv hash),
    its releases and the one it serves (learned with the lock: no session of its own)."""
    text = run_.learned.pop(host.name)  # every list takes the lock first
    facts_text, _, found = text.partition("--- inventory\n")
    found, _, files = found.partition("--- setup files\n")
    facts = host_facts.parse_facts(host, facts_text)
    run_.facts[host.name] = facts
    run_.inventories[host.name] = parse_inventory(found)
    run_.served[host.name] = facts.current
    if run_.action != "rollback":  # a new release: its Python requirement, before any change
        pyreq.require_host(run_.settings, host.name, facts.python)
    python = facts.python.split(" (")[0]
    host.say(f"{python} ({facts.tags.name}); serving {facts.current or 'nothing yet'}")
    if run_.action == "deploy":  # a deploy converges setup's files, or refuses here
        drift = run_.drift[host.name] = converge.drift(host, converge.parse(files))
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


def build_release(run_: Run) -> None:
    """Build the release archive once, and its packages once per tag set of the hosts."""
    targets = {name: facts.tags for name, facts in run_.facts.items()}
    run_.build = archive.build(
        run_.settings,
        allow_dirty=run_.allow_dirty,
        targets=targets,
        say=run_.say,
        builder=wheels.host_builder(run_.hosts, targets),
        release=run_.resume.release if run_.resume else "",
    )
    if run_.resume and run_.build.revision != run_.resume.revision:
        raise FabdeployError(
            f"--resume: deploy {run_.id} shipped revision {run_.resume.revision}, this build is "
            f"revision {run_.build.revision}: no host was touched. Resume from that revision "
            f"(`{run_.settings.command(f'deploy --resume --ref {run_.resume.revision}')}`), or "
            "deploy this one without --resume"
        )


def compare_revisions(run_: Run) -> None:
    """Stop here when every host serves this revision already (a no-op, nothing restarted)."""
    if already_serving(run_):
        run_.done = True
        return
    run_.untested = not skip_test(run_)  # recorded for --resume once the tests passed
    run_.save()  # from now on `deploy --resume` can finish it


def ship_release(run_: Run, host: Host) -> None:
    """Ship the archive (and the packages, where the venv is missing) to ``.incoming``; with
    --resume, a host that has the release complete already keeps it."""
    assert run_.build is not None
    run_.release[host.name] = run_.build.release
    if run_.resume and run_.build.release in run_.inventories[host.name].releases:
        run_.reused.add(host.name)
        host.say(f"releases/{run_.build.release} is here already (deploy {run_.id}): reused")
        return
    run_.archives[host.name] = install.ship(host, run_.build, run_.facts[host.name])
    if host.name in run_.drift:
        converge.stage(host, run_.drift[host.name])  # put in place by the switch


def install_release(run_: Run, host: Host) -> None:
    """Unpack ``releases/<name>``, give it its venv (reused when requirements, Python and tags
    match) and REVISION: one session."""
    assert run_.build is not None
    if host.name not in run_.reused:
        archives = run_.archives[host.name]
        install.install(host, run_.build, run_.facts[host.name], archives, run_.id)


def run_migrations(run_: Run, host: Host) -> None:
    """MIGRATE_COMMAND in the new release, once per deploy (MIGRATE_ON=all: on every host),
    before any smoke check."""
    migrate.migrate_release(host, run_.release[host.name])


def smoke_test(run_: Run, host: Host) -> None:
    """Import the WSGI target and serve the release on a side port until healthy."""
    if not roles.serves_web(run_.settings, host.name):
        host.say("smoke: no web process on this host (its roles run none)")
        return
    smoke.smoke(host, run_.release[host.name])
