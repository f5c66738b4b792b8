"""The rollback's own steps: the release each host goes back to, and one for the fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config.project import fab_command
from ..core.errors import FabdeployError, HostError

if TYPE_CHECKING:
    from ..engine.flow import Flow
    from ..ssh.host import Host


def choose_release(flow: Flow, host: Host) -> None:
    """The release to roll back to: the one asked for, or the one that served before `current`."""
    state = flow.at(host)
    found = state.inventory
    assert found is not None  # (learned by `check`)
    state.present, state.served = sorted(found.releases), found.current
    wanted = flow.options.wanted
    if wanted:
        if wanted not in found.releases:
            known = ", ".join(sorted(found.releases)) or "none"
            raise HostError(host.name, f"no complete release {wanted!r} (releases: {known})")
        if wanted == found.current:
            raise HostError(host.name, f"{wanted} is already the current release")
        target = wanted
    else:
        target = found.previous()
        if not target:
            raise HostError(
                host.name,
                f"no previous release to roll back to (current: {found.current or 'none'})",
            )
    state.release = target
    host.say(f"rolling back from {found.current or 'nothing'} to {target}")


def agree_on_release(flow: Flow) -> None:
    """Without --to, every host must go back to the same release; else say what each has."""
    states = [flow.at(h) for h in flow.hosts]
    if flow.options.wanted or len({s.release for s in states}) <= 1:
        return
    common = set.intersection(*(set(s.present) for s in states))
    lines = [
        f"  {h.name}: serving {s.served or 'nothing'}, would go back to "
        f"{s.release}; has {', '.join(s.present)}"
        for h, s in zip(flow.hosts, states)
    ]
    choice = ", ".join(sorted(common)) or "none: no release is on every host"
    for state in states:
        state.result = f"not rolled back, serving {state.served}"
    raise FabdeployError(
        "the hosts disagree on the release to roll back to; nothing was changed:\n"
        + "\n".join(lines)
        + f"\npick one with `{fab_command(flow.settings, 'rollback --to RELEASE')}` "
        f"(on every host: {choice})"
    )
