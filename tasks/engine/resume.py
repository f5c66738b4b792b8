"""Resuming a fleet deploy: what the last deploy of an environment did, kept on this machine.

Every deploy writes ``.fabdeploy/deploys/<environment>.json`` in the project (its summary as
JSON: id, release, revision, ref, and per host how it ended), first when its release is built,
again after each switch round and when it ends, so even a ``fab`` killed with SIGKILL leaves
what it knew. ``fab deploy --resume`` reads it: the same release (same name, same revision, the
same deploy id) goes to the hosts the record does not show serving it; the others are not
contacted at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config.project import fab_command
from ..core.errors import FabdeployError
from ..core.paths import local_state

if TYPE_CHECKING:
    from ..config import Settings


@dataclass(frozen=True)
class Record:
    """The last deploy of an environment, as its summary recorded it."""

    id: str
    release: str
    revision: str
    ref: str
    ok: bool
    results: dict[str, str]  # host name -> how it ended ("serving <release>", ...)

    def serving(self, host: str) -> bool:
        """Whether the record shows ``host`` serving the release."""
        return self.results.get(host, "") == f"serving {self.release}"

    def to_do(self, hosts: list[str]) -> list[str]:
        """Of ``hosts``, those of this deploy that the record does not show serving it."""
        return [h for h in hosts if h in self.results and not self.serving(h)]


def parse(data: dict[str, object]) -> Record:
    """A `Record` from a deploy's summary data (`tasks.engine.summary.data`)."""
    hosts = data.get("hosts", [])
    assert isinstance(hosts, list)
    return Record(
        id=str(data.get("id", "")),
        release=str(data.get("release", "")),
        revision=str(data.get("revision", "")),
        ref=str(data.get("ref", "")),
        ok=bool(data.get("ok")),
        results={str(h["host"]): str(h.get("result", "")) for h in hosts},
    )


def load(settings: Settings) -> Record:
    """The record of the deploy to resume; a clear error when there is none to resume."""
    path = local_state(settings).deploy_record
    if not path.is_file():
        raise FabdeployError(
            f"--resume: no deploy of {settings.environment} recorded here ({path}): "
            f"nothing to resume; `{fab_command(settings, 'deploy')}` deploys"
        )
    try:
        found = parse(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, AssertionError) as exc:
        raise FabdeployError(f"--resume: {path} is not a deploy record: {exc}") from None
    if not found.release:
        raise FabdeployError(
            f"--resume: deploy {found.id} ({path}) stopped before it built a release: "
            f"nothing to resume; `{fab_command(settings, 'deploy')}` deploys"
        )
    return found
