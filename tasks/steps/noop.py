"""The one no-op rule: when a deploy changes nothing (``deploy`` stops, ``plan`` says so)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from ..config import roles
from .resuming import resumed_everywhere

if TYPE_CHECKING:
    from ..config import Settings
    from ..engine.flow import Flow
    from ..host.facts import Facts


def serves_revision(settings: Settings, name: str, facts: Facts, revision: str) -> bool:
    """Whether host ``name`` serves ``revision``: `current` is a release of it and, where the
    host's roles run the web process, gunicorn runs (a worker-only host runs none)."""
    return facts.revision == revision and (facts.running or not roles.serves_web(settings, name))


def serving_everywhere(settings: Settings, facts: Mapping[str, Facts], revision: str) -> bool:
    """Whether every host of ``facts`` (host name -> its facts) serves ``revision``."""
    return all(serves_revision(settings, name, f, revision) for name, f in facts.items())


def nothing_to_deploy(
    settings: Settings, facts: Mapping[str, Facts], revision: str, drifted: Collection[str]
) -> bool:
    """The one no-op rule: a deploy of ``revision`` (the build's) changes nothing when every
    host serves it already (`serving_everywhere`), setup's files changed on none of them
    (``drifted``: the hosts where they did) and the revision is not a dirty tree's."""
    return (
        not drifted
        and not revision.endswith("-dirty")
        and serving_everywhere(settings, facts, revision)
    )


def already_serving(flow: Flow) -> bool:
    """Whether every host runs the revision just built (then nothing changes, unless --force);
    with --resume, whether every host serves the release resumed."""
    assert flow.build is not None
    asked = flow.options
    if asked.resume:
        return resumed_everywhere(flow)
    if asked.force:
        return False
    settings, revision = flow.settings, flow.build.revision
    facts = {name: state.facts for name, state in flow.states.items() if state.facts}
    drifted = [name for name, state in flow.states.items() if state.drift]
    if drifted and serving_everywhere(settings, facts, revision):
        flow.say(
            f"every host serves revision {revision} already, but setup's files changed on "
            f"{', '.join(drifted)}: deploying it again applies them (graceful restarts)"
        )
        return False
    if not nothing_to_deploy(settings, facts, revision, drifted):
        return False
    for host in flow.hosts:
        flow.at(host).result = f"no change, serving {flow.at(host).served}"
    flow.say(
        f"no change: every host already serves revision {revision} "
        "(nothing restarted; --force deploys it again)"
    )
    return True
