"""The one no-op rule: when a deploy changes nothing (``deploy`` stops, ``plan`` says so)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Protocol

from ..build import source
from ..config import roles
from .resuming import resumed_everywhere

if TYPE_CHECKING:
    from ..config import Settings
    from ..engine.flow import Flow
    from ..host.facts import Facts


class Built(Protocol):
    """What the rule reads of a build (`tasks.build.archive.Build`)."""

    revision: str
    content: str


def serves_build(settings: Settings, name: str, facts: Facts, build: Built) -> bool:
    """Whether host ``name`` serves what ``build`` is made of: `current` has the same content
    digest (`tasks.build.content`: the same files and packages, whatever the commit), or,
    for a release made before the digest existed, is a release of the build's revision (not
    a dirty tree's: that name is no evidence); and, where the host's roles run the web
    process, gunicorn runs (a worker-only host runs none)."""
    if build.content and facts.content:
        same = facts.content == build.content
    else:
        same = facts.revision == build.revision and not build.revision.endswith("-dirty")
    return same and (facts.running or not roles.serves_web(settings, name))


def serving_everywhere(settings: Settings, facts: Mapping[str, Facts], build: Built) -> bool:
    """Whether every host of ``facts`` (host name -> its facts) serves ``build``."""
    return all(serves_build(settings, name, f, build) for name, f in facts.items())


def nothing_to_deploy(
    settings: Settings, facts: Mapping[str, Facts], build: Built, drifted: Collection[str]
) -> bool:
    """The one no-op rule: a deploy of ``build`` changes nothing when every host serves it
    already (`serving_everywhere`) and setup's files changed on none of them (``drifted``:
    the hosts where they did)."""
    return not drifted and serving_everywhere(settings, facts, build)


def why_unchanged(settings: Settings, facts: Mapping[str, Facts], build: Built) -> str:
    """Why a no-op is one, for its message: the revision every host serves, or, when some
    host serves another commit of the same content, which commits and what changed between
    them outside the release (`source.changed_files`)."""
    others = sorted({f.revision for f in facts.values() if f.revision != build.revision})
    if not others:
        return f"every host already serves revision {build.revision}"
    changed: list[str] = []
    for old in others:
        changed += source.changed_files(settings.app_dir, old, build.revision) or []
    shown = ", ".join(sorted(set(changed))[:5]) + (", ..." if len(set(changed)) > 5 else "")
    since = f" (changed since: {shown})" if shown else ""
    return (
        f"revision {build.revision} is made of the same files and packages as revision "
        f"{', '.join(others)}, which the hosts serve: nothing it changed{since} is part of "
        "the release"
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
    settings, build = flow.settings, flow.build
    facts = {name: state.facts for name, state in flow.states.items() if state.facts}
    drifted = [name for name, state in flow.states.items() if state.drift]
    if drifted and serving_everywhere(settings, facts, build):
        flow.say(
            f"{why_unchanged(settings, facts, build)}, but setup's files changed on "
            f"{', '.join(drifted)}: deploying it again applies them (graceful restarts)"
        )
        return False
    if not nothing_to_deploy(settings, facts, build, drifted):
        return False
    for host in flow.hosts:
        flow.at(host).result = f"no change, serving {flow.at(host).served}"
    flow.say(
        f"no change: {why_unchanged(settings, facts, build)} "
        "(nothing restarted; --force deploys it again)"
    )
    return True
