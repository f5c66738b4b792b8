"""The rollback's own steps: the release each host goes back to, and one for the fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import FabdeployError, HostError

if TYPE_CHECKING:
    from ..engine.flow import Run
    from ..ssh.host import Host


def choose_release(run_: Run, host: Host) -> None:
    """The release to roll back to: the one asked for, or the one that served before `current`."""
    found = run_.inventories[host.name]
    run_.present[host.name] = sorted(found.releases)
    run_.served[host.name] = found.current
    wanted = run_.wanted
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
    run_.release[host.name] = target
    host.say(f"rolling back from {found.current or 'nothing'} to {target}")


def agree_on_release(run_: Run) -> None:
    """Without --to, every host must go back to the same release; else say what each has."""
    targets = {run_.release[h.name] for h in run_.hosts}
    if run_.wanted or len(targets) <= 1:
        return
    common = set.intersection(*(set(run_.present[h.name]) for h in run_.hosts))
    lines = [
        f"  {h.name}: serving {run_.served[h.name] or 'nothing'}, would go back to "
        f"{run_.release[h.name]}; has {', '.join(run_.present[h.name])}"
        for h in run_.hosts
    ]
    choice = ", ".join(sorted(common)) or "none: no release is on every host"
    for host in run_.hosts:
        run_.results[host.name] = f"not rolled back, serving {run_.served[host.name]}"
    raise FabdeployError(
        "the hosts disagree on the release to roll back to; nothing was changed:\n"
        + "\n".join(lines)
        + f"\npick one with `{run_.settings.command('rollback --to RELEASE')}` "
        f"(on every host: {choice})"
    )
