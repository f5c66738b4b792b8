"""Fan-out: one piece of work on many hosts in parallel, its results per host (`HostResults`,
as Fabric's GroupResult), and one script asked of every host (`ask`)."""

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


@dataclass(frozen=True)
class HostResults:
    """What one step did on each of its hosts, in host order (like Fabric's GroupResult):
    ``ok`` the hosts where it succeeded, ``failed`` (host, error) where it did not."""

    ok: tuple[Host, ...] = ()
    failed: tuple[tuple[Host, BaseException], ...] = ()

    def __len__(self) -> int:
        """How many hosts failed (so ``if results:`` means "some failed", as with a list)."""
        return len(self.failed)

    def error(self, step: str, after: str = "") -> FabdeployError:
        """One error naming every host where ``step`` failed, and why."""
        return failed(step, list(self.failed), after)


def failed(
    step: str, failures: list[tuple[Host, BaseException]], after: str = ""
) -> FabdeployError:
    """One error naming every host where ``step`` failed, and why."""
    where = "; ".join(f"[{host.name}] {detail(error)}" for host, error in failures)
    return FabdeployError(
        f"{step} failed on {len(failures)} host(s): {where}" + (f". {after}" if after else "")
    )


def primary_first(
    settings: Settings, hosts: list[Host], work: Callable[[Host], object]
) -> list[tuple[Host, object, BaseException | None]]:
    """``work`` on the primary host alone, then (when it worked) on the others in parallel:
    the primary host decides who owns the fleet, as a deploy's lock step does."""
    first = roles.primary(settings, hosts, lambda host: host.name)
    done = each([first], work, 1)
    others = [host for host in hosts if host is not first]
    if done[0][2] is None:
        done += each(others, work, settings.parallel)
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

    replies = []
    for host, reply, error in each(hosts, one, settings.parallel):
        if isinstance(error, KeyboardInterrupt):
            raise error
        if error is not None:
            reply = Reply(host.name, error=detail(error))
        replies.append(reply)
    for host in hosts:
        host.close()
    return replies


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
) -> list[tuple[T, Any, BaseException | None]]:
    """Run ``work`` on every item, ``limit`` at once; return (item, result, error) in order.

    Ctrl-C while items run in other threads calls ``stop`` on each (`Host.interrupt`), waits
    for them, then raises `KeyboardInterrupt`."""

    def guarded(item: T) -> tuple[T, Any, BaseException | None]:
        try:
            return item, work(item), None
        except (Exception, KeyboardInterrupt) as exc:  # reported per host by the caller
            return item, None, exc

    if len(items) <= 1 or limit <= 1:
        return [guarded(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(limit, len(items))) as pool:
        futures = [pool.submit(guarded, item) for item in items]
        try:
            return [future.result() for future in futures]
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            for item in items:
                if stop is not None:
                    stop(item)
            raise


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
    failed = [(host, error) for host, _, error in done if error is not None]
    for host, error in failed:
        if isinstance(error, KeyboardInterrupt):
            raise error
        host.output.line(host.name, detail(error), err=True)
    if failed:
        raise FabdeployError(f"{what} failed on {', '.join(h.name for h, _ in failed)}")
