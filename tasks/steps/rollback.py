"""The rollback's own steps: the release each host goes back to, and one for the fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import FabdeployError, HostError

if TYPE_CHECKING:
    from ..engine.flow import Flow
    from ..ssh.host import Host


def choose_release(flow: Flow, host: Host) -> None:
    """The release to roll back to: the one asked for, or the one that served before `current`."""
    found = flow.inventories[host.name]
    flow.present[host.name] = sorted(found.releases)
    flow.served[host.name] = found.current
    wanted = flow.wanted
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
    flow.release[host.name] = target
    host.say(f"rolling back from {found.current or 'nothing'} to {target}")


def agree_on_release(flow: Flow) -> None:
    """Without --to, every host must go back to the same release; else say what each has."""
    targets = {flow.release[h.name] for h in flow.hosts}
    if flow.wanted or len(targets) <= 1:
        return
    common = set.intersection(*(set(flow.present[h.name]) for h in flow.hosts))
    lines = [
        f"  {h.name}: serving {flow.served[h.name] or 'nothing'}, would go back to "
        f"{flow.release[h.name]}; has {', '.join(flow.present[h.name])}"
        for h in flow.hosts
    ]
    choice = ", ".join(sorted(common)) or "none: no release is on every host"
    for host in flow.hosts:
        flow.results[host.name] = f"not rolled back, serving {flow.served[host.name]}"
    raise FabdeployError(
        "the hosts disagree on the release to roll back to; nothing was changed:\n"
        + "\n".join(lines)
        + f"\npick one with `{flow.settings.command('rollback --to RELEASE')}` "
        f"(on every host: {choice})"
    )
