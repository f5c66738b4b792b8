"""``fab plan``: what ``deploy`` would do, per host, changing nothing on any host.

It runs what a deploy decides with, not a guess of it: the local preconditions, each host's
facts (the `check` step's, read-only), and the build itself (local, the same archive and
packages the deploy would make, then thrown away). From those, per host: the revision to
deploy over the one it serves, the bytes to ship, the venv reused or built (and its
packages), the unit and gunicorn files `setup` would change (a diff), the secret names
added or removed, the hooks that would run there, and the switch round it is in.

The release's name is not planned: a deploy names its release when it builds it.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import TypeVar

from invoke import Context, task

from . import deploy, gitref, hooks, pipeline, preflight, remote, setup, upload, wheelbuild
from .config import Settings
from .fleet import describe_rounds, rounds
from .layout import Layout, unit_file
from .remote import Host
from .report import JSON_HELP, print_json

T = TypeVar("T")


@dataclass
class HostPlan:
    """What a deploy would do on one host (``plan --json``: docs/plan.md)."""

    host: str
    serving: str  # the release it serves ("" none)
    serving_revision: str
    revision: str  # the revision the deploy would ship
    change: bool  # False: every host serves this revision already, nothing would restart
    ship_bytes: int  # the archive, and the packages when the host lacks the venv
    packages_shipped: bool
    venv: str  # the venv's digest
    venv_reused: bool
    packages: list[str]  # what a venv built now would hold (empty when reused)
    files: dict[str, str] = field(default_factory=dict)  # file setup would change -> diff
    secrets_added: list[str] = field(default_factory=list)
    secrets_removed: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)  # "point: name" that would run here
    round: int = 0  # the switch round (1: the first, the canary)
    rounds: list[list[str]] = field(default_factory=list)  # the whole fleet's, in order


def host_files(host: Host) -> tuple[str, dict[str, str], list[str]]:
    """The app user's group, the files setup writes as they are, the secret names there."""
    paths = Layout(host.settings.deploy_root)
    unit, conf = unit_file(host.settings.app_name), paths.gunicorn_conf
    text = host.script(
        remote.shell("plan"),
        env={"UNIT": unit, "CONF": conf, "ENV_FILE": paths.env_file, "APP_USER": host.app_user},
        hide=True,
        label="plan",
    ).stdout
    head, _, rest = text.partition("--- unit\n")
    unit_text, _, rest = rest.partition("--- conf\n")
    conf_text, _, names = rest.partition("--- secrets\n")
    group = head.strip().partition("=")[2] or host.app_user
    return group, {unit: unit_text, conf: conf_text}, names.split()


def diff(path: str, have: str, want: str) -> str:
    """A unified diff of ``path`` from what is on the host to what setup would write."""
    lines = difflib.unified_diff(
        have.splitlines(keepends=True),
        want.splitlines(keepends=True),
        f"{path} (on the host)",
        f"{path} (setup would write)",
    )
    return "".join(lines)


def hooks_on(c: Context, settings: Settings, first: bool) -> list[str]:
    """The hooks a deploy runs on a host (``once`` ones only on the first), and on the first
    host's list also those it runs locally, once (the points of `deploy.DEPLOY`)."""
    local, on_hosts = pipeline.points("deploy", deploy.DEPLOY)
    found = []
    for point in on_hosts:
        for hook in hooks.attached(c, settings, point):
            if first or not hook.once:
                found.append(f"{point}: {hook.name}" + (" (once)" if hook.once else ""))
    for point in local if first else ():
        if point == "failed":
            continue  # only after a failure
        found += [
            f"{point}: {hook.name} (locally, once)" for hook in hooks.attached(c, settings, point)
        ]
    return found


def steps_line(settings: Settings) -> str:
    """``steps: preflight, lock, ...``: the deploy's steps that would run, in order."""
    names = [s.name for s in deploy.DEPLOY if s.name != "migrate" or settings.migrate_command]
    return "steps: " + ", ".join(names)


def plan_host(c: Context, host: Host, build: upload.Build, facts: setup.Facts) -> HostPlan:
    """The plan of one host from its facts and the build."""
    settings = host.settings
    group, files, names = host_files(host)
    want = {
        unit_file(settings.app_name): setup.render_unit(settings, host.app_user, group),
        Layout(settings.deploy_root).gunicorn_conf: setup.render_gunicorn_conf(settings),
    }
    wanted = build.packages_for(facts.tags)
    shipped = wanted is not None and upload.needs_packages(build, facts)
    digest = upload.facts_digest(build, facts)
    reused = digest in facts.venvs
    local_names = set(settings.secrets.names())
    return HostPlan(
        host=host.name,
        serving=facts.current,
        serving_revision=facts.revision,
        revision=build.revision,
        change=True,
        ship_bytes=build.size + (wanted.archive.stat().st_size if shipped and wanted else 0),
        packages_shipped=shipped,
        venv=digest,
        venv_reused=reused,
        packages=[] if reused else requirement_names(build, wanted),
        files={path: diff(path, files[path], text) for path, text in want.items()},
        secrets_added=sorted(local_names - set(names)),
        secrets_removed=sorted(set(names) - local_names),
    )


def requirement_names(build: upload.Build, wanted: object) -> list[str]:
    """What a new venv would hold: the wheels shipped, else the requirement lines."""
    wheels = getattr(wanted, "wheels", ())
    if wheels:
        return sorted(w.split("-")[0] for w in wheels)
    lines = (line.split("#")[0].strip() for line in build.requirements.splitlines())
    return [line for line in lines if line]


def answers(done: list[tuple[Host, T, BaseException | None]]) -> list[T]:
    """The results of `remote.each`, in order; the first host's error raised."""
    for _, _, error in done:
        if error is not None:
            raise error
    return [result for _, result, _ in done]


def make_plan(c: Context, settings: Settings, hosts: list[Host], build: upload.Build,
              facts: dict[str, setup.Facts]) -> list[HostPlan]:  # fmt: skip
    """Every host's plan, the hooks and the switch rounds filled in."""
    plans = answers(
        remote.each(hosts, lambda h: plan_host(c, h, build, facts[h.name]), settings.parallel)
    )
    same = all(f.revision == build.revision and f.running for f in facts.values())
    order = [[p.host for p in batch] for batch in rounds(plans, settings.batch_sizes(len(hosts)))]
    for number, batch in enumerate(order, 1):
        for plan in plans:
            if plan.host in batch:
                plan.round = number
    for index, plan in enumerate(plans):
        plan.change = not same or build.revision.endswith("-dirty")
        plan.hooks = hooks_on(c, settings, index == 0)
        plan.rounds = order
    return plans


def lines(plan: HostPlan) -> list[str]:
    """The plan of one host as ``fab plan`` prints it."""
    if not plan.change:
        return [f"no change: serves revision {plan.revision} already (nothing would restart)"]
    venv = (
        f"venv {plan.venv} reused"
        if plan.venv_reused
        else f"venv {plan.venv} built ({', '.join(plan.packages)})"
    )
    shipped = "with packages" if plan.packages_shipped else "no packages"
    out = [
        f"serving {plan.serving or 'nothing'} ({plan.serving_revision or 'no revision'}); "
        f"would deploy revision {plan.revision} in switch round {plan.round}",
        f"ship {plan.ship_bytes >> 10} KiB ({shipped}); {venv}",
    ]
    for path, text in plan.files.items():
        out.append(
            f"{path}: " + ("setup would change it:\n" + text.rstrip() if text else "no change")
        )
    if plan.secrets_added or plan.secrets_removed:
        added = " ".join(f"+{n}" for n in plan.secrets_added)
        removed = " ".join(f"-{n}" for n in plan.secrets_removed)
        out.append(f"secrets (names only; `setup` uploads them): {added} {removed}".rstrip())
    out += [f"hook {hook}" for hook in plan.hooks]
    return out


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
    settings, hosts = remote.session(c, fleet=True, data_on_stdout=json)
    if not hosts:
        return
    output, build = hosts[0].output, None
    try:
        if ref:
            settings = gitref.export(settings, ref)
        preflight.local(settings, allow_dirty=allow_dirty)
        found = answers(remote.each(hosts, setup.check, settings.parallel))
        facts = {host.name: facts_ for host, facts_ in zip(hosts, found)}
        targets = {name: f.tags for name, f in facts.items()}
        build = upload.build(settings, allow_dirty=allow_dirty, targets=targets,
                             say=output.say, builder=wheelbuild.host_builder(hosts, targets))  # fmt: skip
        plans = make_plan(c, settings, hosts, build, facts)
    finally:
        if build:
            build.cleanup()
        gitref.remove(settings)
        for host in hosts:
            host.close()
    if json:
        print_json([asdict(p) for p in plans], output.clean)
        return
    output.say(steps_line(settings))
    for found in plans:
        for line in lines(found):
            output.line(found.host, line)
    output.say(f"switch rounds: {describe_rounds(plans[0].rounds)}")
