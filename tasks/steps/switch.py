"""The switch step, one host's part (the runner runs the batches: `tasks.engine.runner`):
`current` pointed and the handover behind the health check; what a failure undoes on each
host (`SWITCH_UNDO`); the companion processes after it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import roles
from ..core.errors import FabdeployError
from ..engine.step import Undo
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
        state = flow.at(host)
        state.result = f"serving {state.release or '?'}, a process did not come back"
    flow.across(flow.hosts, lambda host: record_result(flow, host))
    return "The web switch stands: " + flow.serving()


def switch_host(
    host: Host, release: str, before: str | None = None, files: converge.Drift | None = None,
    mode: str = "apply",
) -> None:  # fmt: skip
    """`service.switch` on a host of the web process; elsewhere only `current` is pointed. With
    ``files``, setup's files change first (``mode`` apply, or back), going back on failure."""
    if roles.serves_web(host.settings, host.name):
        first = converge.script(host, files, mode) if files and files.files else None
        service.switch(host, release, before, setup_files=first)
        if files:
            files.applied = mode == "apply"
            host.say(f"setup's files {'in place' if files.applied else 'back'}: {files.describe()}")  # fmt: skip
    else:
        if files and files.files:
            converge.change_files(host, files, mode)
        processes.link_current(host, release)


def switch_one(flow: Flow, host: Host) -> None:
    """Point `current` at the release and hand over to it behind the health check (setup's
    files that changed put in place just before)."""
    state = flow.at(host)
    switch_host(host, state.release, state.served, state.drift or None)
    state.result = f"serving {state.release}"


def restart_processes(flow: Flow, host: Host) -> None:
    """Restart the host's companion processes onto `current` (TERM, STOP_TIMEOUT, KILL)."""
    processes.restart(host)


def remove_unswitched(flow: Flow, host: Host) -> None:
    """After a failure: remove the release this command left unswitched and record the failure."""
    state = flow.at(host)
    release = state.release
    if not release:
        return
    try:
        if state.drift:
            converge.discard(host, state.drift)  # staged, never live
        if service.current_release(host) != release:
            install.remove_release(host, release)
            served = state.served or "nothing"
            host.say(f"removed the unswitched release {release}; still serving {served}")
            state.result = state.result or f"not switched, serving {served}"
        record_result(flow, host, "failed")
    except FabdeployError as exc:
        host.output.line(host.name, f"cleaning up after the failure: {exc}", err=True)


def go_back(flow: Flow, host: Host) -> None:
    """Put a host of a failed batch back on the release it served before this command."""
    state = flow.at(host)
    served, release, files = state.served, state.release, state.drift
    try:
        if served and service.current_release(host) != served:
            back_files = files if files and files.applied else None
            switch_host(host, served, files=back_files, mode="back")
        now = service.current_release(host)
        state.result = f"back on {now}" if now == served else f"serving {now or 'nothing'}"
        if flow.action == "deploy" and now != release:
            install.remove_release(host, release)
        record_result(flow, host, "failed")
    except FabdeployError as exc:
        state.result = "unknown: could not go back"
        host.output.line(host.name, f"going back to {served}: {exc}", err=True)


#: What a failed switch does: the failed batch back on what it served, the release removed
#: from the hosts not switched yet, a deploy line recorded on those switched.
def not_rolled_back(flow: Flow, host: Host) -> None:
    """After a failed rollback batch, on a host it never reached: it still serves what it
    served (the release it was to go back to is an older, good one: kept), the failure recorded."""
    state = flow.at(host)
    state.result = state.result or f"not rolled back, serving {state.served or 'nothing'}"
    try:
        record_result(flow, host, "failed")
    except FabdeployError as exc:
        host.output.line(host.name, f"recording the failure: {exc}", err=True)


SWITCH_UNDO = Undo(back=go_back, unreached=remove_unswitched, reached=record_result)
#: A rollback's batch failed: no release is removed anywhere (each is an older, good one).
ROLLBACK_UNDO = Undo(back=go_back, unreached=not_rolled_back, reached=record_result)
