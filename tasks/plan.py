"""``fab plan``: what ``deploy`` would do, per host, changing nothing on any host.

It runs what a deploy decides with (the local preconditions, each host's facts, the build
itself, then thrown away) and prints, per host, what the deploy would ship, build, change and
restart, or refuse. The plan is `tasks.steps.planning`'s (docs/plan.md).
"""

from __future__ import annotations

from dataclasses import asdict

from invoke import task

from .build import archive, gitref, preflight, pyreq, wheels
from .core.report import JSON_HELP, print_json
from .engine.batches import describe_rounds
from .host import migrate
from .ssh import fanout, session
from .steps.planning import answers, build_line, checked, lines, make_plan, steps_line


@task(
    name="plan",
    help={
        "json": JSON_HELP,
        "allow-dirty": "plan shipping uncommitted changes of a git checkout, as deploy's",
        "ref": "plan deploying this git tag, branch or commit, as deploy's",
    },
)
def plan(c, json=False, allow_dirty=False, ref=""):  # type: ignore[no-untyped-def]
    """Show what deploy would do on each host (build, ship, venv, files, hooks, rounds)."""
    settings, hosts = session.session(c, fleet=True, data_on_stdout=json)
    if not hosts:
        return
    output, build = hosts[0].output, None
    try:
        if ref:
            settings = gitref.export(settings, ref)
        preflight.local(settings, allow_dirty=allow_dirty)
        pyreq.require_local(settings)
        found = answers(fanout.each(hosts, checked, settings.parallel))
        facts = {host.name: facts_ for host, facts_ in zip(hosts, found)}
        targets = {name: f.tags for name, f in facts.items()}
        build = archive.build(settings, allow_dirty=allow_dirty, targets=targets,
                             say=output.say, builder=wheels.host_builder(hosts, targets))  # fmt: skip
        plans = make_plan(c, settings, hosts, build, facts)
    finally:
        if build:
            build.cleanup()
        gitref.remove(settings)
        for host in hosts:
            host.close()
    warning = migrate.local_database_warning(settings, [h.name for h in hosts])
    if warning:  # (on stderr, with --json too)
        output.line("", f"warning: {warning}", err=True)
    if json:
        print_json([asdict(p) for p in plans], output.clean)
        return
    output.say(steps_line(settings))
    built = build_line(build) if build else ""
    if built:  # what BUILD_COMMAND did: ran now (cached for the deploy) or cached already
        output.say(built)
    for found in plans:
        for line in lines(found):
            output.line(found.host, line)
    output.say(f"switch rounds: {describe_rounds(plans[0].rounds)}")
