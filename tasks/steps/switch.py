"""The switch step: batch after batch behind the health check, a failed batch back on
what it served; the companion processes after it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import roles
from ..core.errors import FabdeployError
from ..engine import hooks
from ..host import converge, install, processes, service
from .finish import record_result

if TYPE_CHECKING:
    from ..engine.flow import Flow
    from ..ssh.fanout import GroupResult
    from ..ssh.host import Host


def undo_everywhere(flow: Flow, done: GroupResult) -> str:
    """A release that failed to prepare on some host is removed from every host."""
    flow.across(flow.hosts, lambda host: remove_unswitched(flow, host))
    return "No host was switched: each serves what it served"


def processes_failed(flow: Flow, done: GroupResult) -> str:
    """A companion process that did not come back: the web switch stands, recorded."""
    for host in done.failed:
        flow.results[host.name] = "serving " + flow.release.get(host.name, "?")
        flow.results[host.name] += ", a process did not come back"
    flow.across(flow.hosts, lambda host: record_result(flow, host))
    return "The web switch stands: " + serving(flow)


def switch_in_batches(flow: Flow, *, with_hooks: bool = True) -> None:
    """Switch batch after batch, each host behind its health check; a failed batch goes back."""
    batches = flow.batches()
    first = flow.primary()
    if with_hooks:
        try:
            hooks.run_on(flow.c, first, "before_switch", flow.release[first.name], once=True)
        except BaseException:
            flow.across(flow.hosts, lambda host: remove_unswitched(flow, host))
            raise
    step = switch_with_hooks if with_hooks else switch_one
    done: list[Host] = []
    flow.rounds = tuple(tuple(h.name for h in batch) for batch in batches)
    for number, batch in enumerate(batches, 1):
        if len(batches) > 1:
            canary = " (the canary)" if number == 1 and "," in flow.settings.switch_batch else ""
            flow.say(
                f"switch: batch {number} of {len(batches)}{canary}: "
                + ", ".join(h.name for h in batch)
            )
        failures = flow.across(batch, lambda host: flow.on(host, "switch", step))
        if failures.failed:
            flow.across(batch, lambda host: go_back(flow, host))
            flow.across(
                flow.hosts[len(done) + len(batch) :], lambda host: remove_unswitched(flow, host)
            )
            flow.across(done, lambda host: record_result(flow, host))
            alone = "" if done else "No other host was switched. "
            raise failures.error(
                f"switch (batch {number} of {len(batches)})",
                f"That batch went back to what it served. {alone}" + serving(flow),
            )
        done += batch
        flow.save()  # a fab killed now leaves a record of the hosts that took the release
    if with_hooks:
        try:
            hooks.run_on(flow.c, first, "after_switch", flow.release[first.name], once=True)
        except BaseException:  # every host serves the release: record that, then fail
            flow.across(flow.hosts, lambda host: record_result(flow, host))
            raise


def switch_release(flow: Flow) -> None:
    """Point `current` at the release and hand over to it behind the health check, in
    SWITCH_BATCH batches (the first: the canary); a failed batch goes back."""
    switch_in_batches(flow)


def switch_back(flow: Flow) -> None:
    """Switch every host to the release chosen, in SWITCH_BATCH batches, checked (no hooks)."""
    switch_in_batches(flow, with_hooks=False)


def switch_host(
    host: Host, release: str, before: str | None = None, files: converge.Drift | None = None,
    mode: str = "apply",
) -> None:  # fmt: skip
    """`run.switch` on a host of the web process; elsewhere only `current` is pointed. With
    ``files``, setup's files change first (``mode`` apply, or back), going back on failure."""
    if roles.serves_web(host.settings, host.name):
        first = converge.script(host, files, mode) if files and files.files else None
        service.switch(host, release, before, setup_files=first)
        if files:
            files.applied = mode == "apply"
            host.say(f"setup's files {'in place' if files.applied else 'back'}: {files.describe()}")  # fmt: skip
    else:
        if files and files.files:
            converge.run(host, files, mode)
        processes.link_current(host, release)


def switch_one(flow: Flow, host: Host) -> None:
    """Point `current` at the release and hand over to it behind the health check (setup's
    files that changed put in place just before)."""
    files = flow.drift.get(host.name)
    switch_host(host, flow.release[host.name], flow.served.get(host.name), files or None)
    flow.results[host.name] = f"serving {flow.release[host.name]}"


def switch_with_hooks(flow: Flow, host: Host) -> None:
    """`switch`, with the host's own before_switch and after_switch hooks around it."""
    release = flow.release[host.name]
    hooks.run_on(flow.c, host, "before_switch", release, once=False)
    switch_one(flow, host)
    hooks.run_on(flow.c, host, "after_switch", release, once=False)


def restart_processes(flow: Flow, host: Host) -> None:
    """Restart the host's companion processes onto `current` (TERM, STOP_TIMEOUT, KILL)."""
    processes.restart(host)


def remove_unswitched(flow: Flow, host: Host) -> None:
    """After a failure: remove the release this run left unswitched and record the failure."""
    release = flow.release.get(host.name)
    if not release:
        return
    try:
        files = flow.drift.get(host.name)
        if files:
            converge.discard(host, files)  # staged, never live
        if service.current_release(host) != release:
            install.remove_release(host, release)
            served = flow.served.get(host.name) or "nothing"
            host.say(f"removed the unswitched release {release}; still serving {served}")
            flow.results.setdefault(host.name, f"not switched, serving {served}")
        record_result(flow, host, "failed")
    except FabdeployError as exc:
        host.output.line(host.name, f"cleaning up after the failure: {exc}", err=True)


def go_back(flow: Flow, host: Host) -> None:
    """Put a host of a failed batch back on the release it served before this run."""
    served, release = flow.served.get(host.name, ""), flow.release.get(host.name, "")
    try:
        files = flow.drift.get(host.name)
        if served and service.current_release(host) != served:
            back_files = files if files and files.applied else None
            switch_host(host, served, files=back_files, mode="back")
        now = service.current_release(host)
        flow.results[host.name] = (
            f"back on {now}" if now == served else f"serving {now or 'nothing'}"
        )
        if flow.action == "deploy" and now != release:
            install.remove_release(host, release)
        record_result(flow, host, "failed")
    except FabdeployError as exc:
        flow.results[host.name] = "unknown: could not go back"
        host.output.line(host.name, f"going back to {served}: {exc}", err=True)


def serving(flow: Flow) -> str:
    """Which host serves which release, for the message of a stopped deploy."""
    return "now serving: " + ", ".join(
        f"{h.name} {flow.results.get(h.name, flow.served.get(h.name) or 'nothing')}"
        for h in flow.hosts
    )
