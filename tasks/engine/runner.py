"""The one runner: a command is a list of named `Step` s, run by `execute`.

Each step says where it runs (`LOCAL` once on this machine, `HOSTS` on every host in
parallel, `PRIMARY` on the primary host, `BATCHES` on every host in switch rounds, the first
the canary), what it does and what happens when it fails. The deploy, the rollback,
``upload.release`` and ``setup`` are such lists (`tasks.steps.lists.DEPLOY`, ...), and
everything that needs to know the order reads the list: the runner, the summary table, ``fab
plan`` and the hooks.

Around every step ``execute`` runs its hooks (`tasks.engine.hooks`): ``before_<step>`` and
``after_<step>``, locally for a local step, on each host (or ``once`` on the primary host) for
a host step; ``before_<command>`` and ``after_<command>`` (``deploy``, ``rollback``, ...)
around the whole list, and ``failed`` once, locally, when the command fails, with the error
and what each host serves. Steps marked ``always`` (``unlock``) run at the end whatever
happened before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from ..core.errors import detail
from ..ssh.fanout import GroupResult
from . import hooks, summary
from .step import BATCHES, FIRST, LOCAL, PRIMARY, points

if TYPE_CHECKING:
    from ..ssh.host import Host
    from .flow import Flow
    from .step import Step


def execute(flow: Flow, steps: Sequence[Step], known: set[str] | None = None) -> None:
    """Run ``steps`` in order with their hooks, then the ``always`` ones; on failure the
    ``failed`` hooks run (after the ``always`` steps) and the error is raised.

    ``known`` is every point of every command: a hook attached elsewhere is refused first."""
    flow.steps = tuple(steps)
    local, _ = points(flow.action, steps)
    hooks.check_attached(flow.c, flow.settings, local, known)
    begin, end = f"before_{flow.action}", f"after_{flow.action}"
    try:
        try:
            if begin in local:  # (setup's are its step's, on the hosts)
                hooks.run_local(flow.c, flow.settings, flow.output, begin)
            for step in steps:
                if not step.always and not flow.done:
                    perform(flow, step)
            if end in local and not flow.done:
                hooks.run_local(flow.c, flow.settings, flow.output, end)
        finally:
            for step in steps:
                if step.always:
                    finish(flow, step)
    except BaseException as exc:
        hooks.run_failed(flow.c, flow.settings, flow.output, exc, flow.serving_map())
        raise


def perform(flow: Flow, step: Step) -> None:
    """One step with its hooks; a host step's failures raise after ``recover``."""
    if step.when and not step.when(flow):
        return
    reason = step.skip(flow) if step.skip else ""
    if reason:
        flow.say(f"{step.name}: skipped ({reason})")
        return
    if step.where == LOCAL:
        for point in step.before_points:
            hooks.run_local(flow.c, flow.settings, flow.output, point)
        flow.locally(step.name, step.work)
        for point in step.after_points:
            hooks.run_local(flow.c, flow.settings, flow.output, point)
    elif step.where == BATCHES:
        in_batches(flow, step)
    else:
        on_hosts(flow, step, select(flow, step))


def select(flow: Flow, step: Step) -> list[Host]:
    """The hosts a host step runs on."""
    if step.hosts is not None:
        return step.hosts(flow)
    return [flow.primary()] if step.where == PRIMARY else list(flow.hosts)


def once(flow: Flow, points: tuple[str, ...]) -> None:
    """The ``once`` hooks at ``points``, on the primary host."""
    first = flow.primary()
    for point in points:
        hooks.run_on(flow.c, first, point, flow.at(first).release, once=True)


def around(flow: Flow, step: Step) -> Callable[[Host], None]:
    """A host's part of a host step: the host's own hooks before, the step's work, its own
    hooks after (with the release it has at that moment)."""

    def work(host: Host) -> None:
        for point in step.before_points:
            hooks.run_on(flow.c, host, point, flow.at(host).release, once=False)
        flow.on(host, step.name, step.work)
        for point in step.after_points:
            hooks.run_on(flow.c, host, point, flow.at(host).release, once=False)

    return work


def on_hosts(flow: Flow, step: Step, hosts: list[Host]) -> None:
    """A host step on ``hosts`` in parallel: each host's hooks around its work, the ``once``
    hooks on the primary host before and after; any failure stops the command."""
    if not hosts:
        return

    def once_or_fail(points: tuple[str, ...]) -> None:
        try:
            once(flow, points)
        except Exception as exc:  # counts as the step failing on the primary host
            done = GroupResult({flow.primary(): exc})
            done.say_failed()
            fail(flow, step, done)

    try:
        once_or_fail(step.before_points)
        for group in ordered(flow, step, hosts):
            done = flow.across(group, around(flow, step))
            if done.failed:
                fail(flow, step, done)
        once_or_fail(step.after_points)
    except KeyboardInterrupt:
        interrupted(flow, step, hosts)
        raise


def in_batches(flow: Flow, step: Step) -> None:
    """A `BATCHES` step: its ``once`` hooks before it on the primary host, then batch after
    batch (`Flow.batches`; the first, the canary), each host's hooks around its work and the
    deploy recorded after each batch (`summary.save`), then the ``once`` hooks after it. The
    first batch, when later ones follow, bakes first (`Step.bake`: the canary's watch).

    A failure undoes what the step declares (`Step.undo`) and raises: a failed batch goes
    back, the hosts of the later batches are cleaned up and those of the earlier ones
    recorded; a failed ``once`` hook before it counts as no host reached, one after it as
    every host reached. Ctrl-C during a batch stops there (each host's switch finishes or
    goes back by itself)."""
    batches = flow.batches()
    try:
        once(flow, step.before_points)
    except BaseException:
        undo(flow, step, unreached=flow.hosts)
        raise
    flow.rounds = tuple(tuple(host.name for host in batch) for batch in batches)
    reached: list[Host] = []
    for number, batch in enumerate(batches, 1):
        where = f"batch {number} of {len(batches)}"
        if len(batches) > 1:
            canary = " (the canary)" if number == 1 and "," in flow.settings.switch_batch else ""
            flow.say(f"{step.name}: {where}{canary}: " + ", ".join(h.name for h in batch))
        done, name = flow.across(batch, around(flow, step)), step.phase or step.name
        if not done.failed and step.bake and number == 1 and len(batches) > 1:
            done, name = flow.across(batch, partial(step.bake, flow)), "canary"
        if done.failed:
            later = [host for host in flow.hosts if host not in reached and host not in batch]
            undo(flow, step, back=batch, unreached=later, reached=reached)
            went = "That batch went back to what it served. " if step.undo else ""
            alone = "" if reached else "No other host was switched. "
            raise done.error(f"{name} ({where})", went + alone + flow.serving())
        reached += batch
        summary.save(flow)  # a fab killed now leaves a record of the hosts that took the release
    try:
        once(flow, step.after_points)
    except BaseException:  # every host serves the release: recorded, then the error
        undo(flow, step, reached=flow.hosts)
        raise


def undo(
    flow: Flow,
    step: Step,
    *,
    back: Sequence[Host] = (),
    unreached: Sequence[Host] = (),
    reached: Sequence[Host] = (),
) -> None:
    """After a `BATCHES` step failed, what it declares (`Step.undo`), on each group of hosts
    in parallel: ``back`` (the failed batch), ``unreached`` (not switched), ``reached``."""
    if step.undo is None:
        return
    for hosts, action in (
        (back, step.undo.back),
        (unreached, step.undo.unreached),
        (reached, step.undo.reached),
    ):
        flow.across(hosts, partial(action, flow))


def interrupted(flow: Flow, step: Step, hosts: list[Host]) -> None:
    """Ctrl-C during a host step (its bounded commands ended on the hosts: `appenv.run_bounded`): say
    so, and let the step recover as after a failure (the unswitched release removed)."""
    name = step.phase or step.name
    for host in hosts:
        flow.at(host).result = f"{name} interrupted"
    flow.output.line(
        "", f"{name} interrupted (Ctrl-C) on {', '.join(h.name for h in hosts)}", err=True
    )
    if step.recover:
        after = step.recover(flow, GroupResult((h, KeyboardInterrupt()) for h in hosts))
        flow.output.line("", f"deploy interrupted during {name}: {after}", err=True)


def ordered(flow: Flow, step: Step, hosts: list[Host]) -> list[list[Host]]:
    """``hosts`` in the groups a step runs them, one group after the other (`Step.primary`)."""
    if not step.primary or len(hosts) < 2:
        return [hosts]
    first = flow.primary(among=hosts)
    if first not in hosts:
        return [hosts]
    others = [host for host in hosts if host is not first]
    return [[first], others] if step.primary == FIRST else [others, [first]]


def fail(flow: Flow, step: Step, done: GroupResult) -> None:
    """Mark the hosts where ``step`` failed, let the step recover, raise one error."""
    name = step.phase or step.name
    for host in done.failed:
        flow.at(host).result = f"{name} failed"
    after = step.recover(flow, done) if step.recover else ""
    raise done.error(name, after)


def finish(flow: Flow, step: Step) -> None:
    """An ``always`` step: on the hosts it applies to, its failures printed, never raised."""
    hosts = step.hosts(flow) if step.hosts else flow.hosts
    for group in ordered(flow, step, list(hosts)):
        done = flow.across(group, lambda h: flow.on(h, step.name, step.work), quiet=True)
        for host, error in done.failed.items():
            host.output.line(host.name, f"{step.name} failed: {detail(error)}", err=True)
