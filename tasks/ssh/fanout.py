"""Fan-out: one piece of work on many hosts in parallel (`each`, the one fan-out), its results
per host (`GroupResult`, as Fabric's), and one script asked of every host (`ask`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from invoke import Context

from ..config import roles
from ..core import kv
from ..core.errors import FabdeployError, HostError, detail
from .session import session

if TYPE_CHECKING:
    from ..config import Settings
    from ..core.output import Output
    from .host import Host


class GroupResult(dict):  # type: ignore[type-arg]
    """What one piece of work did on each host, in host order, as Fabric's GroupResult: host ->
    the value its work returned, or the exception it raised; `succeeded` and `failed` split
    them. A Ctrl-C is never a result: `each` raises it."""

    @property
    def succeeded(self) -> dict[Any, Any]:
        """Each host where the work succeeded -> the value it returned, in host order."""
        return {host: value for host, value in self.items() if not isinstance(value, BaseException)}

    @property
    def failed(self) -> dict[Any, BaseException]:
        """Each host where the work failed -> why, in host order."""
        return {host: value for host, value in self.items() if isinstance(value, BaseException)}

    def error(self, step: str, after: str = "") -> FabdeployError:
        """One error naming every host where ``step`` failed, and why."""
        where = "; ".join(f"[{host.name}] {detail(error)}" for host, error in self.failed.items())
        return FabdeployError(
            f"{step} failed on {len(self.failed)} host(s): {where}"
            + (f". {after}" if after else "")
        )

    def say_failed(self) -> None:
        """One line per host that failed, on that host's output: ``failed: <why>``."""
        for host, error in self.failed.items():
            host.output.line(host.name, f"failed: {detail(error)}", err=True)


def primary_first(
    settings: Settings, hosts: list[Host], work: Callable[[Host], object]
) -> GroupResult:
    """``work`` on the primary host alone, then (when it worked) on the others in parallel:
    the primary host decides who owns the fleet, as a deploy's lock step does."""
    first = roles.primary(settings, hosts, lambda host: host.name)
    done = each([first], work, 1)
    if not done.failed:
        done.update(each([host for host in hosts if host is not first], work, settings.parallel))
    return done


class Answer(Protocol):
    """Whatever a host answered: its name, and why it could not answer ("" it did)."""

    host: str
    error: str


@dataclass
class Reply:
    """What one host answered: its ``key=value`` pairs, or why it could not answer."""

    host: str
    pairs: dict[str, str] = field(default_factory=dict)
    text: str = ""
    error: str = ""
    unreachable: bool = False


def ask(
    hosts: list[Host],
    settings: Settings,
    body: str,
    env: Callable[[Host], dict[str, object]],
    label: str,
) -> list[Reply]:
    """Run ``body`` once on every host (``settings.parallel`` at once), in host order."""

    def one(host: Host) -> Reply:
        try:
            host.open()
        except HostError as exc:
            return Reply(host.name, error=exc.detail, unreachable=True)
        result = host.script(body, env=env(host), hide=True, warn=True, label=label)
        reply = Reply(host.name, kv.parse(result.stdout), result.stdout)
        if result.failed and not reply.pairs:
            tail = host.output.clean((result.stderr or result.stdout).strip())[-500:]
            reply.error = f"{label} failed (exit {result.exited}): {tail}"
        return reply

    done = each(hosts, one, settings.parallel)
    for host in hosts:
        host.close()
    failed = done.failed
    return [
        Reply(host.name, error=detail(failed[host])) if host in failed else reply
        for host, reply in done.items()
    ]


def fail_if_unanswered(replies: Sequence[Answer], what: str) -> None:
    """Name the hosts that gave no answer (after their rows were printed)."""
    failed = [r for r in replies if r.error]
    if failed:
        names = ", ".join(r.host for r in failed)
        raise FabdeployError(
            f"{what}: {len(failed)} of {len(replies)} hosts did not answer: {names}"
        )


def report_errors(output: Output, replies: Sequence[Answer]) -> None:
    """One line per host that gave no answer, prefixed with the host."""
    for reply in replies:
        if reply.error:
            output.line(reply.host, reply.error, err=True)


T = TypeVar("T")


def each(
    items: list[T],
    work: Callable[[T], Any],
    limit: int,
    stop: Callable[[T], object] | None = None,
) -> GroupResult:
    """Run ``work`` on every item (a host), ``limit`` at once; what each returned or raised, in
    order (`GroupResult`).

    Ctrl-C (or a `KeyboardInterrupt` out of any item's work) stops the command: ``stop`` is
    called on each item (`Host.interrupt`: bounded commands end on the hosts), the work still
    running is waited for, and `KeyboardInterrupt` is raised, never returned as a result."""

    def guarded(item: T) -> Any:
        try:
            return work(item)
        except Exception as exc:  # a result: the caller reports it per host
            return exc

    if len(items) <= 1 or limit <= 1:  # in this thread: Ctrl-C reaches the work itself
        return GroupResult((item, guarded(item)) for item in items)
    with ThreadPoolExecutor(max_workers=min(limit, len(items))) as pool:
        futures = [pool.submit(guarded, item) for item in items]
        try:
            return GroupResult(zip(items, [future.result() for future in futures]))
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            for item in items:
                if stop is not None:
                    stop(item)
            raise  # once the pool has waited for the work still running


def on_each_host(
    c: Context, what: str, work: Callable[[Host], object], found: list[Host] | None = None
) -> None:
    """Run ``work`` on every host of this command (or ``found``), PARALLEL at once; then close
    the connections (`Host.close`: a shared one stays open for the command's next task) and
    fail naming every host where ``what`` failed."""
    settings, targets = session(c) if found is None else (found[0].settings, found)
    try:
        done = each(targets, work, settings.parallel)
    finally:
        for host in targets:
            host.close()
    for host, error in done.failed.items():
        host.output.line(host.name, detail(error), err=True)
    if done.failed:
        raise FabdeployError(f"{what} failed on {', '.join(h.name for h in done.failed)}")
