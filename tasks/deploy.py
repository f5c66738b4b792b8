"""The deploy flow and rollback: lists of named steps, like Capistrano's framework.rake.

`DEPLOY` is the deploy, `ROLLBACK` the rollback, `RELEASE` ``upload.release`` (a deploy
that stops before the switch); `tasks.pipeline.execute` runs a list, with the hooks of each
step around it, and ``fab plan``, the summary table and docs/architecture.md read the same
lists. In order (``[migrate]`` with MIGRATE_COMMAND):

```
preflight -> lock -> check -> build -> compare -> test -> upload -> install -> [migrate]
          -> smoke -> switch -> processes -> cleanup -> record -> unlock (always)
```

``preflight`` (files, settings, git state: no time) runs first and locally, so a missing
file or an uncommitted change touches no host. ``lock`` takes the deploy lock, on the primary host first (it decides which command owns
the fleet: of two concurrent deploys exactly one proceeds) and then on the others, and in the
same SSH session learns what ``check`` needs (`setup.Facts`, the releases); ``compare``
stops a deploy of what every host serves already (a no-op: no tests run). ``test`` runs the
app's suite locally, in its test venv, before anything is uploaded: a failing suite changes
no host (the lock is released; nothing is left for ``--resume``). Across a
fleet (the hosts of the environment file, or of ``fab -H a,b deploy``: ``--per-host`` keeps
Fabric's loop of one deploy per host) upload, install and smoke run on every host at once,
PARALLEL at a time, all or nothing: a host that fails stops the deploy with no host
switched; MIGRATE_COMMAND runs once, on the primary host, between install and smoke. The
switch then goes in batches of SWITCH_BATCH hosts, each behind its health check; a batch that
fails goes back to the release it served and the deploy stops, the summary saying which host
serves what. Once every host switched, the companion processes (`tasks.processes`) restart
onto the new release. ``cleanup`` and ``record`` decide here and send their work with
``unlock``: one session for the three.

Any failure before the switch leaves a host serving what it served, the half-made release
removed and a ``failed`` line recorded. ``unlock`` always runs; a lock left by a ``fab`` that
died on this machine is stale and broken, saying so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from invoke import task

from . import (
    converge,
    gitref,
    hooks,
    migrate,
    preflight,
    processes,
    pyreq,
    remote,
    roles,
    run,
    setup,
    test,
    upload,
    wheelbuild,
)
from . import resume as resumes
from .config import Settings
from .errors import FabdeployError, HostError
from .fleet import HostResults, Run, write_json
from .layout import Audit
from .lock import LockedButFailed, release_lock, take_lock
from .lock import unlock as unlock  # `tasks.deploy.unlock`, as before it moved to lock
from .pipeline import BATCHES, FIRST, HOSTS, LAST, LOCAL, PRIMARY, Step, execute, points
from .releases import (
    append_audit,
    audit_program,
    inventory_program,
    parse_inventory,
    plan_prune,
    prune_program,
    read_revision,
    utc_now,
)
from .remote import Host

FLEET_HELP = "kept for older scripts: -H hosts are one fleet by default now"
PER_HOST_HELP = "with -H a,b: Fabric's loop, one separate deploy per -H host, one after the other"


# --- the tasks -----------------------------------------------------------------------------


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
    settings, hosts = remote.session(c, fleet=fleet or not per_host, roles=roles)
    hosts, last = to_resume(settings, hosts) if resume and hosts else (hosts, None)
    if not hosts:
        return  # `fab -H a,b deploy`: this host was deployed with the fleet (or nothing to resume)
    run_ = Run(c, settings, hosts, "deploy", skip_tests, allow_dirty, break_lock, force=force, lock_wait=float(lock_wait), summary_json=summary_json, ref=ref or (last.ref if last else ""), resume=last)  # fmt: skip
    with reported(run_):
        execute(run_, DEPLOY, known_points())  # the steps below, with their hooks
    if run_.done or run_.build is None:
        return  # a no-op: every host serves this revision already
    run_.say(
        f"deployed {run_.build.release} (revision {run_.build.revision}) to "
        f"{len(hosts)} host(s) in {time.monotonic() - run_.started:.1f}s"
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
    settings, hosts = remote.session(c, fleet=fleet or not per_host)
    if not hosts:
        return
    run_ = Run(c, settings, hosts, "rollback", wanted=to or release)
    with reported(run_):
        execute(run_, ROLLBACK, known_points())


@task
def trust(c):  # type: ignore[no-untyped-def]
    """Connect once, show each new host key's fingerprint and record it in known_hosts."""
    _, hosts = remote.session(c, trust=True)
    for host in hosts:
        host.open()
        key = host.conn.client.get_transport().get_remote_server_key()
        host.say(f"host key {key.get_name()} {remote.fingerprint(key)} is trusted")
        host.close()


# --- the lists ---------------------------------------------------------------------------


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


def undo_everywhere(run_: Run, done: HostResults) -> str:
    """A release that failed to prepare on some host is removed from every host."""
    run_.across(run_.hosts, lambda host: undo(run_, host))
    return "No host was switched: each serves what it served"


def processes_failed(run_: Run, done: HostResults) -> str:
    """A companion process that did not come back: the web switch stands, recorded."""
    for host, _ in done.failed:
        run_.results[host.name] = "serving " + run_.release.get(host.name, "?")
        run_.results[host.name] += ", a process did not come back"
    run_.across(run_.hosts, lambda host: record(run_, host))
    return "The web switch stands: " + serving(run_)


def lock(run_: Run, host: Host) -> None:
    """Take the deploy lock on the host; in the same session learn what `check` needs."""
    body, env = learn_program(host)
    try:
        text = take_lock(host, run_.owner, break_lock=run_.break_lock, wait=run_.lock_wait, then=(body, env))  # fmt: skip
    except LockedButFailed:
        run_.locked.append(host)
        raise
    run_.locked.append(host)
    run_.learned[host.name] = text


def preflight_step(run_: Run) -> None:
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


def test_step(run_: Run) -> None:
    """The app's own test suite, locally, in its test venv; a failure stops the deploy before
    any host changes (and leaves nothing for `--resume`)."""
    pyreq.require_local(run_.settings)  # the local Python satisfies the app's requirement
    try:
        test.run_local(run_.c, run_.settings, run_.output)
    except BaseException:
        for host in run_.hosts:
            run_.results[host.name] = f"not deployed, serving {run_.served.get(host.name) or 'nothing'}"  # fmt: skip
        raise
    run_.untested = False
    run_.save()  # the release passed its tests: from now on `deploy --resume` can finish it


def check(run_: Run, host: Host) -> None:
    """The host was set up: its Python and wheel tags (for the packages and the venv hash),
    its releases and the one it serves (learned with the lock: no session of its own)."""
    text = run_.learned.pop(host.name)  # every list takes the lock first
    facts_text, _, found = text.partition("--- inventory\n")
    found, _, files = found.partition("--- setup files\n")
    facts = setup.parse_facts(host, facts_text)
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
    facts, facts_env = setup.facts_program(host)
    listing, listing_env = inventory_program(host)
    files, files_env = converge.program(host)
    body = f'{facts}\necho "--- inventory"\n{listing}\necho "--- setup files"\n{files}'
    return body, {**facts_env, **listing_env, **files_env}


def build(run_: Run) -> None:
    """Build the release archive once, and its packages once per tag set of the hosts."""
    targets = {name: facts.tags for name, facts in run_.facts.items()}
    run_.build = upload.build(
        run_.settings,
        allow_dirty=run_.allow_dirty,
        targets=targets,
        say=run_.say,
        builder=wheelbuild.host_builder(run_.hosts, targets),
        release=run_.resume.release if run_.resume else "",
    )
    if run_.resume and run_.build.revision != run_.resume.revision:
        raise FabdeployError(
            f"--resume: deploy {run_.id} shipped revision {run_.resume.revision}, this build is "
            f"revision {run_.build.revision}: no host was touched. Resume from that revision "
            f"(`{run_.settings.command(f'deploy --resume --ref {run_.resume.revision}')}`), or "
            "deploy this one without --resume"
        )


def compare(run_: Run) -> None:
    """Stop here when every host serves this revision already (a no-op, nothing restarted)."""
    if already_serving(run_):
        run_.done = True
        return
    run_.untested = not skip_test(run_)  # recorded for --resume once the tests passed
    run_.save()  # from now on `deploy --resume` can finish it


def upload_step(run_: Run, host: Host) -> None:
    """Ship the archive (and the packages, where the venv is missing) to ``.incoming``; with
    --resume, a host that has the release complete already keeps it."""
    assert run_.build is not None
    run_.release[host.name] = run_.build.release
    if run_.resume and run_.build.release in run_.inventories[host.name].releases:
        run_.reused.add(host.name)
        host.say(f"releases/{run_.build.release} is here already (deploy {run_.id}): reused")
        return
    run_.archives[host.name] = upload.ship(host, run_.build, run_.facts[host.name])
    if host.name in run_.drift:
        converge.stage(host, run_.drift[host.name])  # put in place by the switch


def install(run_: Run, host: Host) -> None:
    """Unpack ``releases/<name>``, give it its venv (reused when requirements, Python and tags
    match) and REVISION: one session."""
    assert run_.build is not None
    if host.name not in run_.reused:
        archives = run_.archives[host.name]
        upload.install(host, run_.build, run_.facts[host.name], archives, run_.id)


def migrate_step(run_: Run, host: Host) -> None:
    """MIGRATE_COMMAND in the new release, once per deploy (MIGRATE_ON=all: on every host),
    before any smoke check."""
    migrate.run(host, run_.release[host.name])


def smoke(run_: Run, host: Host) -> None:
    """Import the WSGI target and serve the release on a side port until healthy."""
    if not roles.serves_web(run_.settings, host.name):
        host.say("smoke: no web process on this host (its roles run none)")
        return
    test.smoke(host, run_.release[host.name])


def switch_in_batches(run_: Run, *, with_hooks: bool = True) -> None:
    """Switch batch after batch, each host behind its health check; a failed batch goes back."""
    batches = run_.batches()
    first = run_.primary()
    if with_hooks:
        try:
            hooks.run_on(run_.c, first, "before_switch", run_.release[first.name], once=True)
        except BaseException:
            run_.across(run_.hosts, lambda host: undo(run_, host))
            raise
    step = switch_with_hooks if with_hooks else switch
    done: list[Host] = []
    run_.rounds = tuple(tuple(h.name for h in batch) for batch in batches)
    for number, batch in enumerate(batches, 1):
        if len(batches) > 1:
            canary = " (the canary)" if number == 1 and "," in run_.settings.switch_batch else ""
            run_.say(
                f"switch: batch {number} of {len(batches)}{canary}: "
                + ", ".join(h.name for h in batch)
            )
        failures = run_.across(batch, lambda host: run_.on(host, "switch", step))
        if failures:
            run_.across(batch, lambda host: back(run_, host))
            run_.across(run_.hosts[len(done) + len(batch) :], lambda host: undo(run_, host))
            run_.across(done, lambda host: record(run_, host))
            alone = "" if done else "No other host was switched. "
            raise failures.error(
                f"switch (batch {number} of {len(batches)})",
                f"That batch went back to what it served. {alone}" + serving(run_),
            )
        done += batch
        run_.save()  # a fab killed now leaves a record of the hosts that took the release
    if with_hooks:
        try:
            hooks.run_on(run_.c, first, "after_switch", run_.release[first.name], once=True)
        except BaseException:  # every host serves the release: record that, then fail
            run_.across(run_.hosts, lambda host: record(run_, host))
            raise


def switch_deploy(run_: Run) -> None:
    """Point `current` at the release and hand over to it behind the health check, in
    SWITCH_BATCH batches (the first: the canary); a failed batch goes back."""
    switch_in_batches(run_)


def switch_back(run_: Run) -> None:
    """Switch every host to the release chosen, in SWITCH_BATCH batches, checked (no hooks)."""
    switch_in_batches(run_, with_hooks=False)


def switch_host(
    host: Host, release: str, before: str | None = None, files: converge.Drift | None = None,
    mode: str = "apply",
) -> None:  # fmt: skip
    """`run.switch` on a host of the web process; elsewhere only `current` is pointed. With
    ``files``, setup's files change first (``mode`` apply, or back), going back on failure."""
    if roles.serves_web(host.settings, host.name):
        first = converge.script(host, files, mode) if files and files.files else None
        run.switch(host, release, before, setup_files=first)
        if files:
            files.applied = mode == "apply"
            host.say(f"setup's files {'in place' if files.applied else 'back'}: {files.describe()}")  # fmt: skip
    else:
        if files and files.files:
            converge.run(host, files, mode)
        processes.link_current(host, release)


def switch(run_: Run, host: Host) -> None:
    """Point `current` at the release and hand over to it behind the health check (setup's
    files that changed put in place just before)."""
    files = run_.drift.get(host.name)
    switch_host(host, run_.release[host.name], run_.served.get(host.name), files or None)
    run_.results[host.name] = f"serving {run_.release[host.name]}"


def switch_with_hooks(run_: Run, host: Host) -> None:
    """`switch`, with the host's own before_switch and after_switch hooks around it."""
    release = run_.release[host.name]
    hooks.run_on(run_.c, host, "before_switch", release, once=False)
    switch(run_, host)
    hooks.run_on(run_.c, host, "after_switch", release, once=False)


def processes_step(run_: Run, host: Host) -> None:
    """Restart the host's companion processes onto `current` (TERM, STOP_TIMEOUT, KILL)."""
    processes.restart(host)


def choose(run_: Run, host: Host) -> None:
    """The release to roll back to: the one asked for, or the one that served before `current`."""
    found = run_.inventories[host.name]
    run_.present[host.name] = sorted(found.releases)
    run_.served[host.name] = found.current
    wanted = run_.wanted
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
    host.say(f"rolling back from {found.current or 'nothing'} to {target}")


def agree(run_: Run) -> None:
    """Without --to, every host must go back to the same release; else say what each has."""
    targets = {run_.release[h.name] for h in run_.hosts}
    if run_.wanted or len(targets) <= 1:
        return
    common = set.intersection(*(set(run_.present[h.name]) for h in run_.hosts))
    lines = [
        f"  {h.name}: serving {run_.served[h.name] or 'nothing'}, would go back to "
        f"{run_.release[h.name]}; has {', '.join(run_.present[h.name])}"
        for h in run_.hosts
    ]
    choice = ", ".join(sorted(common)) or "none: no release is on every host"
    for host in run_.hosts:
        run_.results[host.name] = f"not rolled back, serving {run_.served[host.name]}"
    raise FabdeployError(
        "the hosts disagree on the release to roll back to; nothing was changed:\n"
        + "\n".join(lines)
        + f"\npick one with `{run_.settings.command('rollback --to RELEASE')}` "
        f"(on every host: {choice})"
    )


def cleanup(run_: Run, host: Host) -> None:
    """Keep KEEP_RELEASES releases (never current or the previous), drop unused venvs (sent
    with ``unlock``; a failure there is a warning: the new release serves)."""
    found = run_.inventories[host.name]  # as the lock found it, plus the release switched to
    release = run_.release.get(host.name, "")
    if release:
        releases, venvs = dict(found.releases), list(found.venvs)
        if run_.build and release not in releases:  # the one just installed
            digest = upload.facts_digest(run_.build, run_.facts[host.name])
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
        run_.defer(host, "cleanup", remote.library() + "\n" + body, env)


def record(run_: Run, host: Host, result: str = "ok") -> None:
    """Append a deploy (or rollback) line to revisions.log (sent with ``unlock``; after a
    failure, at once)."""
    release = run_.release.get(host.name, "")
    revision = run_.build.revision if run_.build else read_revision(host, release)
    line = Audit(
        utc_now(), run_.action, release, revision, upload.local_user(), result, "", run_.id
    )
    if result == "ok" and host in run_.locked:
        run_.defer(host, "record", *audit_program(host, line))
    else:
        append_audit(host, line)


def unlock_step(run_: Run, host: Host) -> None:
    """Release our deploy lock (after the cleanup and record sent with it)."""
    release_lock(host, run_.owner, first=run_.deferred.pop(host.name, []))


#: After install: its own point and the older ``after_upload`` (the release is ready to run).
AFTER_INSTALL = ("after_install", "after_upload")
#: The deploy, step by step (docs/architecture.md).
DEPLOY = (
    Step("preflight", preflight_step, LOCAL),
    Step("lock", lock, HOSTS, primary=FIRST),
    Step("check", check, HOSTS),
    Step("build", build, LOCAL),
    Step("compare", compare, LOCAL),
    Step("test", test_step, LOCAL, skip=skip_test),
    Step("upload", upload_step, HOSTS, recover=undo_everywhere, after=(), phase="prepare"),
    Step("install", install, HOSTS, recover=undo_everywhere, after=AFTER_INSTALL, phase="prepare"),
    Step(
        "migrate",
        migrate_step,
        PRIMARY,
        hosts=migrate_hosts,
        when=has_migration,
        recover=undo_everywhere,
    ),
    Step("smoke", smoke, HOSTS, recover=undo_everywhere),
    Step("switch", switch_deploy, BATCHES),
    Step("processes", processes_step, HOSTS, hosts=companion_hosts, recover=processes_failed),
    Step("cleanup", cleanup, HOSTS),
    Step("record", record, HOSTS),
    Step("unlock", unlock_step, HOSTS, hosts=locked_hosts, always=True, primary=LAST),
)
#: The rollback: the release chosen on every host, switched in batches (no switch hooks).
ROLLBACK = (
    Step("lock", lock, HOSTS, primary=FIRST),
    Step("check", check, HOSTS),
    Step("choose", choose, HOSTS),
    Step("agree", agree, LOCAL),
    Step("switch", switch_back, BATCHES),
    Step("processes", processes_step, HOSTS, hosts=companion_hosts, recover=processes_failed),
    Step("record", record, HOSTS),
    Step("unlock", unlock_step, HOSTS, hosts=locked_hosts, always=True, primary=LAST),
)


def ready(run_: Run, host: Host) -> None:
    """Say the release is installed and how to switch to it."""
    assert run_.build is not None
    switch = run_.settings.command(f"rollback --release {run_.build.release}")
    host.say(f"release {run_.build.release} ready, not switched: `{switch}` switches to it")


#: ``upload.release``: a deploy that stops before the switch (the release stays, unswitched).
RELEASE = (
    Step("lock", lock, HOSTS, primary=FIRST),
    Step("check", check, HOSTS),
    Step("build", build, LOCAL),
    Step("upload", upload_step, HOSTS, recover=undo_everywhere, after=(), phase="prepare"),
    Step("install", install, HOSTS, recover=undo_everywhere, after=AFTER_INSTALL, phase="prepare"),
    Step("ready", ready, HOSTS),
    Step("unlock", unlock_step, HOSTS, hosts=locked_hosts, always=True, primary=LAST),
)
#: The commands and their lists, for the hooks' check and the docs.
COMMANDS = {"deploy": DEPLOY, "rollback": ROLLBACK, "release": RELEASE, "setup": setup.SETUP}


def known_points() -> set[str]:
    """Every hook point of every command."""
    found: set[str] = set()
    for action, steps in COMMANDS.items():
        local, on_hosts = points(action, steps)
        found.update(local, on_hosts)
    return found


def release_task(c, allow_dirty: bool = False) -> None:  # type: ignore[no-untyped-def]
    """``upload.release``: `RELEASE` on the command's hosts, in parallel, with its hooks."""
    settings, hosts = remote.session(c)
    if not hosts:
        return
    run_ = Run(c, settings, hosts, "release", allow_dirty=allow_dirty)
    with reported(run_, table=False):
        execute(run_, RELEASE, known_points())


# --- the command's end ---------------------------------------------------------------------


@contextmanager
def reported(run_: Run, *, table: bool = True) -> Iterator[Run]:
    """Print the summary table (``table``) and close every connection when the command ends."""
    error: BaseException | None = None
    try:
        yield run_
    except BaseException as exc:
        error = exc
        raise
    finally:
        if run_.build:
            run_.build.cleanup()
        gitref.remove(run_.settings)  # the export of `deploy --ref`
        if run_.timings and table:
            run_.say(run_.summary())
        try:
            run_.save(error, final=True)
        except OSError as exc:  # never hides how the deploy itself ended
            run_.output.line("", f"cannot record the deploy for --resume: {exc}", err=True)
        if run_.summary_json:
            try:
                write_json(run_.summary_json, run_.summary_data(error))
            except OSError as exc:  # never hides how the deploy itself ended
                run_.output.line(
                    "", f"--summary-json: cannot write {run_.summary_json}: {exc}", err=True
                )
        for host in run_.hosts:
            host.close()


# --- resuming ---------------------------------------------------------------------------


def to_resume(settings: Settings, hosts: list[Host]) -> tuple[list[Host], resumes.Record]:
    """The deploy ``--resume`` continues, and the hosts it works on: those not shown serving its
    release (the others are named, never contacted)."""
    last = resumes.load(settings)
    todo = last.to_do([h.name for h in hosts])
    output = hosts[0].output
    for host in hosts:
        if last.serving(host.name):
            output.line(host.name, f"serves {last.release} (deploy {last.id}): not touched")
        elif host.name not in last.results:
            output.line(host.name, f"not a host of deploy {last.id}: not touched")
    if last.ok or not todo:
        output.say(f"nothing to resume: deploy {last.id} of {last.release} ended well everywhere")
        return [], last
    output.say(f"resuming deploy {last.id} of {last.release} on {', '.join(todo)}")
    return [h for h in hosts if h.name in todo], last


def resumed_everywhere(run_: Run) -> bool:
    """With --resume: drop the hosts that serve the release already (an interrupted switch that
    finished on its own); whether that leaves none."""
    assert run_.resume is not None
    release = run_.resume.release
    for host in list(run_.hosts):
        facts = run_.facts[host.name]
        if facts.current == release and facts.running:
            host.say(f"serves {release} already: nothing to do here")
            run_.results[host.name] = f"serving {release}"
            run_.hosts.remove(host)
    if not run_.hosts:
        run_.say(f"nothing to resume: every host of deploy {run_.id} serves {release}")
    return not run_.hosts


def already_serving(run_: Run) -> bool:
    """Whether every host runs the revision just built (then nothing changes, unless --force);
    with --resume, whether every host serves the release resumed."""
    assert run_.build is not None
    if run_.resume:
        return resumed_everywhere(run_)
    revision = run_.build.revision
    web = {h.name: roles.serves_web(run_.settings, h.name) for h in run_.hosts}
    same = all(
        f.revision == revision and (f.running or not web.get(name, True))
        for name, f in run_.facts.items()
    )
    drifted = [name for name, files in run_.drift.items() if files]
    if same and drifted and not run_.force:
        run_.say(
            f"every host serves revision {revision} already, but setup's files changed on "
            f"{', '.join(drifted)}: deploying it again applies them (graceful restarts)"
        )
        return False
    if same and not run_.force and not run_.resume and not revision.endswith("-dirty"):
        for host in run_.hosts:
            run_.results[host.name] = f"no change, serving {run_.served[host.name]}"
        run_.say(
            f"no change: every host already serves revision {revision} "
            "(nothing restarted; --force deploys it again)"
        )
        return True
    return False


# --- after a failure -----------------------------------------------------------------------


def undo(run_: Run, host: Host) -> None:
    """After a failure: remove the release this run left unswitched and record the failure."""
    release = run_.release.get(host.name)
    if not release:
        return
    try:
        files = run_.drift.get(host.name)
        if files:
            converge.discard(host, files)  # staged, never live
        if run.current_release(host) != release:
            upload.remove_release(host, release)
            served = run_.served.get(host.name) or "nothing"
            host.say(f"removed the unswitched release {release}; still serving {served}")
            run_.results.setdefault(host.name, f"not switched, serving {served}")
        record(run_, host, "failed")
    except FabdeployError as exc:
        host.output.line(host.name, f"cleaning up after the failure: {exc}", err=True)


def back(run_: Run, host: Host) -> None:
    """Put a host of a failed batch back on the release it served before this run."""
    served, release = run_.served.get(host.name, ""), run_.release.get(host.name, "")
    try:
        files = run_.drift.get(host.name)
        if served and run.current_release(host) != served:
            back_files = files if files and files.applied else None
            switch_host(host, served, files=back_files, mode="back")
        now = run.current_release(host)
        run_.results[host.name] = (
            f"back on {now}" if now == served else f"serving {now or 'nothing'}"
        )
        if run_.action == "deploy" and now != release:
            upload.remove_release(host, release)
        record(run_, host, "failed")
    except FabdeployError as exc:
        run_.results[host.name] = "unknown: could not go back"
        host.output.line(host.name, f"going back to {served}: {exc}", err=True)


def serving(run_: Run) -> str:
    """Which host serves which release, for the message of a stopped deploy."""
    return "now serving: " + ", ".join(
        f"{h.name} {run_.results.get(h.name, run_.served.get(h.name) or 'nothing')}"
        for h in run_.hosts
    )
