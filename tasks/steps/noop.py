"""The one no-op rule: when a deploy changes nothing (``deploy`` stops, ``plan`` says so)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import roles
from .resuming import resumed_everywhere

if TYPE_CHECKING:
    from ..engine.flow import Run


def already_serving(run_: Run) -> bool:
    """Whether every host runs the revision just built (then nothing changes, unless --force);
    with --resume, whether every host serves the release resumed."""
    assert run_.build is not None
    if run_.resume:
        return resumed_everywhere(run_)
    revision = run_.build.revision
    web = {h.name: roles.serves_web(run_.settings, h.name) for h in run_.hosts}
    same = all(
        f.revision == revision and (f.running or not web.get(name, True))
        for name, f in run_.facts.items()
    )
    drifted = [name for name, files in run_.drift.items() if files]
    if same and drifted and not run_.force:
        run_.say(
            f"every host serves revision {revision} already, but setup's files changed on "
            f"{', '.join(drifted)}: deploying it again applies them (graceful restarts)"
        )
        return False
    if same and not run_.force and not run_.resume and not revision.endswith("-dirty"):
        for host in run_.hosts:
            run_.results[host.name] = f"no change, serving {run_.served[host.name]}"
        run_.say(
            f"no change: every host already serves revision {revision} "
            "(nothing restarted; --force deploys it again)"
        )
        return True
    return False
