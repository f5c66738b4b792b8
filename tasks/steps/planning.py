"""``fab plan``: what ``deploy`` would do, per host, changing nothing on any host.

It runs what a deploy decides with, not a guess of it: the local preconditions, each host's
facts (the `check` step's, read-only), and the build itself (local, the same archive and
packages the deploy would make, then thrown away). From those, per host: the revision to
deploy over the one it serves, the bytes to ship, the venv reused or built (and its
packages), the files setup owns that the deploy would put in place with the switch (a diff;
`tasks.host.converge`), the app's settings changed (``ENV_<NAME>``, in clear), the secrets
changed (names added or removed only), the processes running
on older files, or the change the deploy would refuse and the commands to run instead, the
hooks that would run there, and the switch round it is in.

The release's name is not planned: a deploy names its release when it builds it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invoke import Context

from ..build import pyreq
from ..config import roles
from ..core.errors import HostError
from ..core.paths import layout
from ..engine import hooks as engine_hooks
from ..engine import step
from ..engine.batches import batch_sizes, rounds
from ..host import canary, converge, install, migrate, provision, sudoers, units
from ..host import facts as host_facts
from ..ssh import fanout
from . import lists
from .noop import nothing_to_deploy

if TYPE_CHECKING:
    from ..build import archive
    from ..config import Settings
    from ..ssh.fanout import GroupResult
    from ..ssh.host import Host


@dataclass
class HostPlan:
    """What a deploy would do on one host (``plan --json``: docs/plan.md)."""

    host: str
    serving: str  # the release it serves ("" none)
    serving_revision: str
    revision: str  # the revision the deploy would ship
    change: bool  # False: `noop.nothing_to_deploy`, nothing would restart
    ship_bytes: int  # the archive, and the packages when the host lacks the venv
    packages_shipped: bool
    venv: str  # the venv's digest
    venv_reused: bool
    packages: list[str]  # what a venv built now would hold (empty when reused)
    files: dict[str, str] = field(default_factory=dict)  # file setup owns -> diff ("" same)
    secrets_added: list[str] = field(default_factory=list)
    secrets_removed: list[str] = field(default_factory=list)
    secrets_changed: bool = False  # the deploy would install the secrets file
    #: The app's settings the deploy would change here, in clear (`converge.settings_changes`).
    settings_changes: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # processes started before their files
    refused: str = ""  # why the deploy would stop before changing any host ("" it would not)
    restarts: list[str] = field(default_factory=list)  # what the deploy restarts here, and how
    warnings: list[str] = field(default_factory=list)  # what the deploy would do, but should not
    hooks: list[str] = field(default_factory=list)  # "point: name" that would run here
    migrates: bool = False  # MIGRATE_COMMAND would run here (MIGRATE_ON)
    round: int = 0  # the switch round (1: the first, the canary)
    rounds: list[list[str]] = field(default_factory=list)  # the whole fleet's, in order
    build: dict[str, object] = field(default_factory=dict)  # BUILD_COMMAND's step ({} none)
    probes: list[str] = field(default_factory=list)  # CANARY_URLS requested after its switch
    canary: dict[str, int] = field(default_factory=dict)  # its bake, as the canary ({}: none)

    @property
    def drifted(self) -> bool:
        """Whether the deploy would change setup's files here (or refuse to)."""
        return bool(self.refused or self.stale or self.secrets_changed or any(self.files.values()))


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
    host's list also those it runs locally, once (the points of `lists.DEPLOY`)."""
    local, on_hosts = step.points("deploy", lists.DEPLOY)
    found = []
    for point in on_hosts:
        for hook in engine_hooks.attached(c, settings, point):
            if first or not hook.once:
                found.append(f"{point}: {hook.name}" + (" (once)" if hook.once else ""))
    for point in local if first else ():
        if point == "failed":
            continue  # only after a failure
        found += [
            f"{point}: {hook.name} (locally, once)"
            for hook in engine_hooks.attached(c, settings, point)
        ]
    return found


def steps_line(settings: Settings) -> str:
    """``steps: preflight, lock, ...``: the deploy's steps that would run, in order."""
    names = [s.name for s in lists.DEPLOY if s.name != "migrate" or settings.migrate_command]
    return "steps: " + ", ".join(names)


def plan_host(c: Context, host: Host, build: archive.Build, facts: host_facts.Facts) -> HostPlan:
    """The plan of one host from its facts and the build."""
    settings = host.settings
    found = converge.read(host)
    settings_path = layout(settings).settings_file
    on_host = found.files.get(settings_path)
    targets = converge.targets(host, found.group or host.app_user, on_host is not None)
    want = {t.path: t.text for t in targets}
    try:
        drift, refused = converge.drift(host, found), ""
    except HostError as exc:
        drift, refused = converge.Drift(), exc.detail
    changing = tuple(target.path for target in drift.files)
    refused = refused or sudoers.refused_for(host, facts, "deploy", changing)
    wanted = build.packages_for(facts.tags)
    shipped = wanted is not None and install.needs_packages(build, facts)
    digest = install.facts_digest(build, facts)
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
        files={path: diff(path, found.files.get(path) or "", text) for path, text in want.items()},
        secrets_added=sorted(local_names - set(found.secret_names)),
        secrets_removed=sorted(set(found.secret_names) - local_names),
        secrets_changed=drift.secrets,
        settings_changes=converge.settings_changes(on_host, settings),
        stale=list(drift.stale),
        refused=refused,
        warnings=[w for w in [provision.deploy_user_warning(host)] if w],
    )


def requirement_names(build: archive.Build, wanted: object) -> list[str]:
    """What a new venv would hold: the wheels shipped, else the requirement lines."""
    wheels = getattr(wanted, "wheels", ())
    if wheels:
        return sorted(w.split("-")[0] for w in wheels)
    lines = (line.split("#")[0].strip() for line in build.requirements.splitlines())
    return [line for line in lines if line]


def checked(host: Host) -> host_facts.Facts:
    """The host's facts (`facts.read_facts`, as the check step learns them), its Python
    checked against the app's requirement."""
    facts = host_facts.read_facts(host)
    pyreq.require_host(host.settings, host.name, facts.python)
    return facts


def answers(done: GroupResult) -> list[Any]:
    """What `fanout.each` returned on each host, in order; the first host's error raised."""
    first = next(iter(done.failed.values()), None)
    if first is not None:
        raise first
    return list(done.values())


def make_plan(c: Context, settings: Settings, hosts: list[Host], build: archive.Build,
              facts: dict[str, host_facts.Facts]) -> list[HostPlan]:  # fmt: skip
    """Every host's plan, the hooks and the switch rounds filled in."""
    plans = answers(
        fanout.each(hosts, lambda h: plan_host(c, h, build, facts[h.name]), settings.parallel)
    )
    order = [
        [p.host for p in batch]
        for batch in rounds(plans, batch_sizes(settings.switch_batch, len(hosts)))
    ]
    for number, batch in enumerate(order, 1):
        for plan in plans:
            if plan.host in batch:
                plan.round = number
    drifted = [p.host for p in plans if p.drifted]
    change = not nothing_to_deploy(settings, facts, build, drifted)
    migrating = migrate.hosts(settings, [p.host for p in plans])
    for index, plan in enumerate(plans):
        plan.change = change
        plan.migrates = plan.host in migrating
        plan.hooks = hooks_on(c, settings, index == 0)
        plan.rounds = order
        plan.build = build.outputs.as_dict() if build.outputs else {}
        web = roles.serves_web(settings, plan.host)
        plan.probes = canary.probe_urls(settings) if web else []
        plan.restarts = restarts_on(settings, plan.host) if change else []
        if web and settings.canary_bake and plan.round == 1 and len(order) > 1:
            plan.canary = {
                "bake": settings.canary_bake,
                "max_5xx": settings.canary_max_5xx,
                "min_requests": settings.canary_min_requests,
            }
    return plans


def restarts_on(settings: Settings, host: str) -> list[str]:
    """What a deploy restarts on ``host``, and how: the web process by the USR2 handover in
    its switch round, each companion process once every host switched."""
    found = []
    if roles.serves_web(settings, host):
        found.append(f"{settings.app_name}.service: USR2 handover in its switch round (no request refused)")  # fmt: skip
    found += [
        f"{units.unit_name(settings, name)}: restarted once every host switched (TERM, up to "
        f"STOP_TIMEOUT={settings.stop_timeout}s, then KILL)"
        for name in roles.companions_of(settings, host)
    ]
    return found


def build_line(build: archive.Build) -> str:
    """What the build step did for the plan (``""`` without BUILD_COMMAND): ran now and
    cached for the deploy, or cached already (the deploy runs no command)."""
    done = build.outputs
    if done is None:
        return ""
    if done.cached:
        return f"build: {done.made()} cached in .fabdeploy/build/{done.key}: deploy runs no BUILD_COMMAND"  # fmt: skip
    return f"build: BUILD_COMMAND ran in {done.seconds:.1f}s (key {done.key}): {done.made()}, cached for the deploy"  # fmt: skip


def lines(plan: HostPlan) -> list[str]:
    """The plan of one host as ``fab plan`` prints it."""
    if not plan.change and plan.serving_revision != plan.revision:
        return [
            f"no change: serves revision {plan.serving_revision}, made of the same files and "
            f"packages as revision {plan.revision} (nothing would restart)"
        ]
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
    if plan.refused:
        out.append(f"deploy would stop here, changing no host: {plan.refused}")
    out += [f"warning: {warning}" for warning in plan.warnings]
    for path, text in plan.files.items():
        applied = "deploy puts it in place with the switch:\n" + text.rstrip()
        out.append(f"{path}: " + (applied if text else "no change"))
    if plan.settings_changes:
        changed = "; ".join(plan.settings_changes)
        out.append(f"settings: {changed}: deploy installs them with the switch (a graceful reload)")
    if plan.secrets_changed:
        added = " ".join(f"+{n}" for n in plan.secrets_added)
        removed = " ".join(f"-{n}" for n in plan.secrets_removed)
        names = f" (names: {added} {removed})".replace(" )", ")") if added or removed else ""
        out.append(f"secrets changed{names}: deploy installs them with the switch")
    out += [
        f"{what} started before its files changed: the deploy reloads it gracefully"
        for what in plan.stale
    ]
    if plan.migrates:
        out.append("migrate: MIGRATE_COMMAND runs here, before the smoke check")
    if plan.probes:
        out.append(
            f"probe on the smoke check's side port, then after the switch: {', '.join(plan.probes)}"
            " (a 5xx or no answer stops the deploy; after the switch it sends the host back)"
        )
    out += [f"restart {what}" for what in plan.restarts]
    if plan.canary:
        out.append(
            f"canary: watched {plan.canary['bake']}s after its switch, before the next round: "
            f"5xx over {plan.canary['max_5xx']}% of at least {plan.canary['min_requests']} "
            "requests in its access log, or a probe's 5xx, sends it back and stops the deploy"
        )
    out += [f"hook {hook}" for hook in plan.hooks]
    return out
