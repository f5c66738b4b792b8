"""`Step`: one named step of a command, where it runs and what its failure does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..ssh.fanout import GroupResult
    from ..ssh.host import Host
    from .flow import Flow


#: Where a step runs.
LOCAL = "locally, once"


HOSTS = "every host"


PRIMARY = "the primary host"


#: The runner runs such a step batch after batch (`tasks.engine.runner.in_batches`).
BATCHES = "every host, in switch batches"
#: `Step.primary`: the primary host alone first (the lock: one owner decided there), or last.
FIRST, LAST = "first", "last"


@dataclass(frozen=True)
class Undo:
    """What a failure of a `BATCHES` step does, per host, before the error is raised:
    ``back`` on each host of the batch that failed, ``unreached`` on each host it did not reach
    yet (every host when a ``once`` hook before the step fails), ``reached`` on each host it
    switched (every host when a ``once`` hook after the step fails). Each takes
    ``(flow, host)``."""

    back: Callable[[Flow, Host], None]
    unreached: Callable[[Flow, Host], None]
    reached: Callable[[Flow, Host], None]


@dataclass(frozen=True)
class Step:
    """One named step of a command: what it runs, where, and what a failure does.

    ``work`` takes ``(flow)`` for `LOCAL` steps, ``(flow, host)`` for the others (a `BATCHES`
    step's work is one host's: the runner runs the batches, `tasks.engine.runner.in_batches`).
    ``hosts`` narrows a host step's hosts (default: every host; `PRIMARY`: the primary host).
    ``primary`` orders a host step: `FIRST` runs it on the primary host alone, then on the
    others in parallel only if it worked there (the lock); `LAST` on the others, then on the
    primary host (the unlock: whoever takes the primary next finds the others free).
    ``skip`` gives a reason to skip the step this time ("" runs it). ``recover`` runs after a
    host step failed on some hosts, before the error is raised, and returns a sentence for the
    error (what the hosts serve now); ``undo`` is what a failure of a `BATCHES` step does on
    each host (`Undo`). ``bake`` runs on each host of a `BATCHES` step's first batch when
    later batches follow (the canary), before the next batch; its failure fails that batch
    (`Flow.canary`). ``before`` and ``after`` are the hook points around the step (default
    ``before_<name>``, ``after_<name>``; a step may carry an older name too; ``()``: none).
    """

    name: str
    work: Callable[..., Any]
    where: str = HOSTS
    hosts: Callable[[Flow], list[Host]] | None = None
    skip: Callable[[Flow], str] | None = None
    recover: Callable[[Flow, GroupResult], str] | None = None
    undo: Undo | None = None
    before: tuple[str, ...] | None = None
    after: tuple[str, ...] | None = None
    always: bool = False
    primary: str = ""  # FIRST: on the primary host alone, then the others; LAST: it last
    when: Callable[[Flow], bool] | None = None
    phase: str = ""
    bake: Callable[[Flow, Host], None] | None = None  # `BATCHES`: the canary's, after round 1

    @property
    def doc(self) -> str:
        """The first line of the step function's docstring: what the step does."""
        return ((self.work.__doc__ or "").strip().splitlines() or [""])[0]

    @property
    def before_points(self) -> tuple[str, ...]:
        """The hook points run before this step."""
        return (f"before_{self.name}",) if self.before is None else self.before

    @property
    def after_points(self) -> tuple[str, ...]:
        """The hook points run after this step."""
        return (f"after_{self.name}",) if self.after is None else self.after

    @property
    def on_hosts(self) -> bool:
        """Whether the step runs on hosts (its hooks are host points)."""
        return self.where != LOCAL


def points(action: str, steps: Sequence[Step]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The local and the host hook points of a command running ``steps``."""
    local = [f"before_{action}", f"after_{action}", "failed"]
    on_hosts: list[str] = []
    for step in steps:
        names = [*step.before_points, *step.after_points]
        (on_hosts if step.on_hosts else local).extend(names)
    local = [point for point in local if point not in on_hosts]  # setup's: on the hosts
    return tuple(dict.fromkeys(local)), tuple(dict.fromkeys(on_hosts))
