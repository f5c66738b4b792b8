"""The pipeline as data: a command is a list of named `Step` s, run by `execute`.

Each step says where it runs (`LOCAL` once on this machine, `HOSTS` on every host in
parallel, `PRIMARY` on the primary host, `BATCHES` in switch rounds: the step runs them), what
it does and what happens when it fails. The deploy, the rollback, ``upload.release`` and
``setup`` are such lists (`tasks.deploy.DEPLOY`, ...), and everything that needs to know the
order reads the list: the runner, the summary table, ``fab plan`` and the hooks.

Around every step ``execute`` runs its hooks (`tasks.hooks`): ``before_<step>`` and
``after_<step>``, locally for a local step, on each host (or ``once`` on the primary host) for
a host step; ``before_<command>`` and ``after_<command>`` (``deploy``, ``rollback``, ...)
around the whole list, and ``failed`` once, locally, when the command fails, with the error
and what each host serves. Steps marked ``always`` (``unlock``) run at the end whatever
happened before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..core.errors import detail
from ..ssh.fanout import HostResults
from . import hooks
from .step import BATCHES, FIRST, LOCAL, PRIMARY, points

if TYPE_CHECKING:
    from ..ssh.host import Host
    from .flow import Run
    from .step import Step


def execute(run_: Run, steps: Sequence[Step], known: set[str] | None = None) -> None:
    """Run ``steps`` in order with their hooks, then the ``always`` ones; on failure the
    ``failed`` hooks run (after the ``always`` steps) and the error is raised.

    ``known`` is every point of every command: a hook attached elsewhere is refused first."""
    run_.steps = tuple(steps)
    local, _ = points(run_.action, steps)
    hooks.check_attached(run_.c, run_.settings, local, known)
    begin, end = f"before_{run_.action}", f"after_{run_.action}"
    try:
        try:
            if begin in local:  # (setup's are its step's, on the hosts)
                hooks.run_local(run_.c, run_.settings, run_.output, begin)
            for step in steps:
                if not step.always and not run_.done:
                    perform(run_, step)
            if end in local and not run_.done:
                hooks.run_local(run_.c, run_.settings, run_.output, end)
        finally:
            for step in steps:
                if step.always:
                    finish(run_, step)
    except BaseException as exc:
        hooks.run_failed(run_.c, run_.settings, run_.output, exc, run_.serving_map())
        raise


def perform(run_: Run, step: Step) -> None:
    """One step with its hooks; a host step's failures raise after ``recover``."""
    if step.when and not step.when(run_):
        return
    reason = step.skip(run_) if step.skip else ""
    if reason:
        run_.say(f"{step.name}: skipped ({reason})")
        return
    if step.where == LOCAL:
        for point in step.before_points:
            hooks.run_local(run_.c, run_.settings, run_.output, point)
        run_.locally(step.name, step.work)
        for point in step.after_points:
            hooks.run_local(run_.c, run_.settings, run_.output, point)
    elif step.where == BATCHES:
        step.work(run_)
    else:
        on_hosts(run_, step, select(run_, step))


def select(run_: Run, step: Step) -> list[Host]:
    """The hosts a host step runs on."""
    if step.hosts is not None:
        return step.hosts(run_)
    return [run_.primary()] if step.where == PRIMARY else list(run_.hosts)


def on_hosts(run_: Run, step: Step, hosts: list[Host]) -> None:
    """A host step on ``hosts`` in parallel: each host's hooks around its work, the ``once``
    hooks on the primary host before and after; any failure stops the command."""
    if not hosts:
        return
    first = run_.primary()

    def once(points: tuple[str, ...]) -> None:
        for point in points:
            hooks.run_on(run_.c, first, point, run_.release.get(first.name, ""), once=True)

    def work(host: Host) -> None:
        for point in step.before_points:
            hooks.run_on(run_.c, host, point, run_.release.get(host.name, ""), once=False)
        run_.on(host, step.name, step.work)
        for point in step.after_points:
            hooks.run_on(run_.c, host, point, run_.release.get(host.name, ""), once=False)

    def once_or_fail(points: tuple[str, ...]) -> None:
        try:
            once(points)
        except Exception as exc:  # counts as the step failing on the primary host
            fail(run_, step, run_.results_of([(first, exc)]))

    try:
        once_or_fail(step.before_points)
        for group in ordered(run_, step, hosts):
            done = run_.across(group, work)
            if done.failed:
                fail(run_, step, done)
        once_or_fail(step.after_points)
    except KeyboardInterrupt:
        interrupted(run_, step, hosts)
        raise


def interrupted(run_: Run, step: Step, hosts: list[Host]) -> None:
    """Ctrl-C during a host step (its bounded commands ended on the hosts: `appenv.run_bounded`): say
    so, and let the step recover as after a failure (the unswitched release removed)."""
    name = step.phase or step.name
    for host in hosts:
        run_.results[host.name] = f"{name} interrupted"
    run_.output.line(
        "", f"{name} interrupted (Ctrl-C) on {', '.join(h.name for h in hosts)}", err=True
    )
    if step.recover:
        after = step.recover(run_, HostResults((), tuple((h, KeyboardInterrupt()) for h in hosts)))
        run_.output.line("", f"deploy interrupted during {name}: {after}", err=True)


def ordered(run_: Run, step: Step, hosts: list[Host]) -> list[list[Host]]:
    """``hosts`` in the groups a step runs them, one group after the other (`Step.primary`)."""
    first = run_.primary()
    if not step.primary or first not in hosts or len(hosts) == 1:
        return [hosts]
    others = [host for host in hosts if host is not first]
    return [[first], others] if step.primary == FIRST else [others, [first]]


def fail(run_: Run, step: Step, done: HostResults) -> None:
    """Mark the hosts where ``step`` failed, let the step recover, raise one error."""
    name = step.phase or step.name
    for host, _ in done.failed:
        run_.results[host.name] = f"{name} failed"
    after = step.recover(run_, done) if step.recover else ""
    raise done.error(name, after)


def finish(run_: Run, step: Step) -> None:
    """An ``always`` step: on the hosts it applies to, its failures printed, never raised."""
    hosts = step.hosts(run_) if step.hosts else run_.hosts
    for group in ordered(run_, step, list(hosts)):
        done = run_.across(group, lambda h: run_.on(h, step.name, step.work), quiet=True)
        for host, error in done.failed:
            host.output.line(host.name, f"{step.name} failed: {detail(error)}", err=True)
