"""The switch step, one host's part (the runner runs the batches: `tasks.engine.runner`):
`current` pointed and the handover behind the health check and the probes of CANARY_URLS;
the canary's bake after the first round (`bake_canary`); what a failure undoes on each host
(`SWITCH_UNDO`); the companion processes after it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..config import roles
from ..core.errors import FabdeployError, HostError
from ..engine.step import Undo
from ..host import canary, converge, install, processes, service
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
    mode: str = "apply", probes: list[str] | None = None, access_log: bool = False,
) -> service.Switched | None:  # fmt: skip
    """`service.switch` on a host of the web process; elsewhere only `current` is pointed
    (None). With ``files``, setup's files change first (``mode`` apply, or back), going back on
    failure; ``probes`` and ``access_log`` as `service.switch` takes them."""
    if roles.serves_web(host.settings, host.name):
        first = converge.script(host, files, mode) if files and files.files else None
        done = service.switch(host, release, before, first, probes, access_log)
        if files:
            files.applied = mode == "apply"
            host.say(f"setup's files {'in place' if files.applied else 'back'}: {files.describe()}")  # fmt: skip
        return done
    if files and files.files:
        converge.change_files(host, files, mode)
    processes.link_current(host, release)
    return None


def switch_one(flow: Flow, host: Host) -> None:
    """Point `current` at the release and hand over to it behind the health check and the
    probes of CANARY_URLS (setup's files that changed put in place just before)."""
    state = flow.at(host)
    deploying = flow.action == "deploy"  # a rollback is the way out: it probes nothing
    baking = deploying and flow.settings.canary_bake > 0 and host in flow.canary()
    probes = canary.probe_urls(flow.settings) if deploying else []
    done = switch_host(host, state.release, state.served, state.drift or None,
                       probes=probes, access_log=baking)  # fmt: skip
    if done:
        state.probes, state.access_from = done.probes, done.access_from
    state.result = f"serving {state.release}"


def bake_canary(flow: Flow, host: Host) -> None:
    """The canary, once switched, serves CANARY_BAKE seconds before the next round, watched:
    a 5xx rate over CANARY_MAX_5XX or a probe's 5xx fails its round (it goes back)."""
    if flow.at(host).access_from is not None:  # (a web host of the canary, with a bake)
        flow.on(host, "canary", watch_canary)


def watch_canary(flow: Flow, host: Host) -> None:
    """Look at the canary every `canary.POLL` seconds until CANARY_BAKE ran out; the first
    look that `canary.verdict` fails raises, naming the figures."""
    settings, state = flow.settings, flow.at(host)
    host.say(
        f"canary: watching what it serves for {settings.canary_bake}s (5xx over "
        f"{settings.canary_max_5xx}% of at least {settings.canary_min_requests} requests, or a "
        "5xx probe, sends it back)"
    )
    started = time.monotonic()
    seen = canary.Traffic(offset=state.access_from or 0)
    while True:
        seen = seen.add(canary.look(host, seen.offset))
        seen.seconds = time.monotonic() - started
        state.canary = seen
        why = canary.verdict(seen, settings)
        if why:
            raise HostError(
                host.name, f"canary failed after {seen.seconds:.0f}s: {why}{seen.detail()}"
            )
        left = settings.canary_bake - seen.seconds
        if left <= 0:
            break
        time.sleep(min(canary.POLL, left))
    host.say(f"canary passed: {seen.line()}")


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
