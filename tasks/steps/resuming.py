"""``deploy --resume``: the hosts a resumed deploy still has to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine import resume

if TYPE_CHECKING:
    from ..config import Settings
    from ..engine.flow import Flow
    from ..ssh.host import Host


def to_resume(settings: Settings, hosts: list[Host]) -> tuple[list[Host], resume.Record]:
    """The deploy ``--resume`` continues, and the hosts it works on: those not shown serving its
    release (the others are named, never contacted)."""
    last = resume.load(settings)
    todo = last.to_do([h.name for h in hosts])
    output = hosts[0].output
    for host in hosts:
        if last.serving(host.name):
            output.line(host.name, f"serves {last.release} (deploy {last.id}): not touched")
        elif host.name not in last.results:
            output.line(host.name, f"not a host of deploy {last.id}: not touched")
    if last.ok or not todo:
        output.say(f"nothing to resume: deploy {last.id} of {last.release} ended well everywhere")
        return [], last
    output.say(f"resuming deploy {last.id} of {last.release} on {', '.join(todo)}")
    return [h for h in hosts if h.name in todo], last


def resumed_everywhere(flow: Flow) -> bool:
    """With --resume: drop the hosts that serve the release already (an interrupted switch that
    finished on its own); whether that leaves none."""
    assert flow.options.resume is not None
    release = flow.options.resume.release
    for host in list(flow.hosts):
        facts = flow.at(host).facts
        assert facts is not None  # (learned by `check`)
        if facts.current == release and facts.running:
            host.say(f"serves {release} already: nothing to do here")
            flow.at(host).result = f"serving {release}"
            flow.hosts.remove(host)
    if not flow.hosts:
        flow.say(f"nothing to resume: every host of deploy {flow.id} serves {release}")
    return not flow.hosts
