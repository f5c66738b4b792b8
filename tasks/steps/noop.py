"""The one no-op rule: when a deploy changes nothing (``deploy`` stops, ``plan`` says so)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import roles
from .resuming import resumed_everywhere

if TYPE_CHECKING:
    from ..engine.flow import Flow


def already_serving(flow: Flow) -> bool:
    """Whether every host runs the revision just built (then nothing changes, unless --force);
    with --resume, whether every host serves the release resumed."""
    assert flow.build is not None
    asked = flow.options
    if asked.resume:
        return resumed_everywhere(flow)
    revision = flow.build.revision
    web = {h.name: roles.serves_web(flow.settings, h.name) for h in flow.hosts}
    facts = {name: state.facts for name, state in flow.states.items() if state.facts}
    same = all(
        f.revision == revision and (f.running or not web.get(name, True))
        for name, f in facts.items()
    )
    drifted = [name for name, state in flow.states.items() if state.drift]
    if same and drifted and not asked.force:
        flow.say(
            f"every host serves revision {revision} already, but setup's files changed on "
            f"{', '.join(drifted)}: deploying it again applies them (graceful restarts)"
        )
        return False
    if same and not asked.force and not asked.resume and not revision.endswith("-dirty"):
        for host in flow.hosts:
            flow.at(host).result = f"no change, serving {flow.at(host).served}"
        flow.say(
            f"no change: every host already serves revision {revision} "
            "(nothing restarted; --force deploys it again)"
        )
        return True
    return False
