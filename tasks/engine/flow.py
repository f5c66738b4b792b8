"""One command across hosts: the state a `tasks.pipeline` list of steps works on, the
results of a step on every host (`GroupResult`), seconds per step per host and the summary.

Every host keeps one SSH connection for the whole command (its `Host`), so a step on a host
costs a session on that connection, never a new connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from invoke import Context

from .. import roles
from ..core.errors import detail
from ..core.output import Output
from ..core.report import table, write_json
from ..host.lockfile import LockOwner, new_id
from ..ssh import fanout
from ..ssh.fanout import GroupResult
from ..ssh.host import Host
from . import resume as engine_resume
from .batches import describe_rounds, rounds

if TYPE_CHECKING:
    from ..build.archive import Build
    from ..config import Settings
    from ..host.converge import Drift
    from ..host.facts import Facts
    from ..host.lockfile import Deferred
    from ..host.releases import Inventory
    from .step import Step


LOCAL_ROW = "local"


@dataclass
class Flow:
    """One deploy or rollback: settings, hosts, options, and what happened on each host."""

    c: Context
    settings: Settings
    hosts: list[Host]
    action: str = "deploy"
    skip_tests: bool = False
    allow_dirty: bool = False
    break_lock: bool = False
    wanted: str = ""  # rollback: the release asked for
    force: bool = False  # deploy: even a revision every host already serves
    lock_wait: float = 0  # seconds to wait for a held deploy lock
    summary_json: str = ""  # a file to write the summary to as JSON
    ref: str = ""  # deploy: the git ref to deploy instead of the work tree
    resume: engine_resume.Record | None = None  # deploy --resume: the deploy it continues
    steps: tuple[Step, ...] = ()  # the list being run (`tasks.pipeline.execute`)
    done: bool = False  # a step found nothing more to do (a no-op deploy): stop there
    untested: bool = False  # deploy: built, its tests not passed yet: not recorded for --resume
    owner: LockOwner = field(init=False)
    id: str = field(init=False)  # this run's id, the same on every host (in the lock)
    started: float = field(init=False)
    output: Output = field(init=False)
    build: Build | None = None
    facts: dict[str, Facts] = field(default_factory=dict)
    locked: list[Host] = field(default_factory=list)
    release: dict[str, str] = field(default_factory=dict)  # host -> release being switched to
    served: dict[str, str] = field(default_factory=dict)  # host -> release served before
    present: dict[str, list[str]] = field(default_factory=dict)  # host -> its releases
    reused: set[str] = field(default_factory=set)  # --resume: hosts that had the release
    results: dict[str, str] = field(default_factory=dict)  # host -> how it ended
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    rounds: tuple[tuple[str, ...], ...] = ()  # the switch rounds, host names
    learned: dict[str, str] = field(default_factory=dict)  # host -> what lock's session learned
    inventories: dict[str, Inventory] = field(default_factory=dict)  # host -> its releases
    archives: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # host -> shipped
    deferred: dict[str, list[Deferred]] = field(default_factory=dict)  # host -> for unlock
    drift: dict[str, Drift] = field(default_factory=dict)  # host -> setup's files to converge

    def __post_init__(self) -> None:
        self.id = self.resume.id if self.resume else new_id()
        self.started = time.monotonic()
        self.owner = LockOwner.mine(deploy_id=self.id)
        self.output = self.hosts[0].output if self.hosts else Output()

    def say(self, text: str) -> None:
        """Print a line that belongs to no host."""
        self.output.say(text)

    def defer(self, host: Host, label: str, body: str, env: dict[str, object]) -> None:
        """Send a script with the session that releases ``host``'s lock (one session less)."""
        self.deferred.setdefault(host.name, []).append((label, body, env))

    def _timed(self, where: str, name: str, work: Callable[[], object]) -> object:
        started = time.monotonic()
        try:
            return work()
        finally:
            spent = self.timings.setdefault(where, {})
            spent[name] = spent.get(name, 0.0) + time.monotonic() - started

    def locally(self, name: str, step: Callable[[Flow], object]) -> None:
        """Run a local step once."""
        self.say(f"-> {name}")
        self._timed(LOCAL_ROW, name, lambda: step(self))

    def on(self, host: Host, name: str, step: Step) -> None:
        """Run a host step on one host."""
        host.say(f"-> {name}")
        self._timed(host.name, name, lambda: step(self, host))

    def across(
        self, hosts: Sequence[Host], work: Callable[[Host], object], *, quiet: bool = False
    ) -> GroupResult:
        """Run ``work`` on ``hosts`` in parallel (PARALLEL at once); each failure is printed
        (unless ``quiet``) and returned; Ctrl-C on any host stops the command (`fanout.each`)."""
        done = fanout.each(list(hosts), work, self.settings.parallel, Host.interrupt)
        if not quiet:
            done.say_failed()
        return done

    def primary(self) -> Host:
        """The host of this command's once-per-deploy work (`tasks.roles.primary`)."""
        return roles.primary(self.settings, self.hosts, lambda host: host.name)

    def serving_map(self) -> dict[str, str]:
        """Each host -> how it ended, or what it served before (for the ``failed`` hook)."""
        return {
            h.name: self.results.get(h.name, self.served.get(h.name) or "nothing")
            for h in self.hosts
        }

    def serving(self) -> str:
        """``now serving: web1 R2, web2 back on R1``: which host serves what, for an error."""
        return "now serving: " + ", ".join(
            f"{name} {what}" for name, what in self.serving_map().items()
        )

    def batches(self) -> list[list[Host]]:
        """The hosts in switch rounds of SWITCH_BATCH (the first host first: the canary)."""
        return rounds(self.hosts, self.settings.batch_sizes(len(self.hosts)))

    def summary(self) -> str:
        """Seconds per step, result and SSH use per host (and the local steps)."""
        order = [step.name for step in self.steps]
        steps = [s for s in order if any(s in t for t in self.timings.values())]
        steps += [s for t in self.timings.values() for s in t if s not in steps]
        rows = []
        for where in [LOCAL_ROW, *(h.name for h in self.hosts)]:
            spent = self.timings.get(where, {})
            host = next((h for h in self.hosts if h.name == where), None)
            ssh = f"{host.connections}/{host.sessions}" if host else ""
            rows.append(
                [where]
                + [f"{spent[s]:.2f}" if s in spent else "" for s in steps]
                + [f"{sum(spent.values()):.2f}", ssh, self.results.get(where, "")]
            )
        headers = ["host", *steps, "total", "ssh conn/sess", "result"]
        text = table(headers, rows, right=",".join([*steps, "total"]))
        return text + (f"\nswitch rounds: {describe_rounds(self.rounds)}" if self.rounds else "")

    def summary_data(self, error: BaseException | None = None) -> dict[str, object]:
        """The summary as JSON data: the run, then one object per host (docs/json.md)."""
        return {
            "action": self.action,
            "id": self.id,
            "environment": self.settings.environment,
            "ok": error is None,
            "error": "" if error is None else detail(error),
            "release": self.build.release if self.build else "",
            "revision": self.build.revision if self.build else "",
            "ref": self.ref,
            "seconds": round(time.monotonic() - self.started, 3),
            "local": {"steps": self._steps(LOCAL_ROW)},
            "rounds": [list(names) for names in self.rounds],
            "hosts": [
                {
                    "host": host.name,
                    "result": self.results.get(host.name, ""),
                    "served_before": self.served.get(host.name, ""),
                    "release": self.release.get(host.name, ""),
                    "steps": self._steps(host.name),
                    "ssh_connections": host.connections,
                    "ssh_sessions": host.sessions,
                }
                for host in self.hosts
            ],
        }

    def save(self, error: BaseException | None = None, *, final: bool = False) -> None:
        """Record this deploy on this machine (`tasks.resume`): what ``--resume`` continues.
        Hosts of the resumed deploy this run left alone keep what the record said of them."""
        if self.action != "deploy" or not self.build or self.untested:
            return
        data = self.summary_data(error)
        data["ok"] = final and error is None
        hosts = data["hosts"]
        assert isinstance(hosts, list)
        if self.resume:
            ours = {h.name for h in self.hosts}
            hosts += [
                {"host": name, "result": self.results.get(name, result)}
                for name, result in self.resume.results.items()
                if name not in ours
            ]
        path = engine_resume.record_file(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(str(path), data)

    def _steps(self, where: str) -> dict[str, float]:
        return {name: round(spent, 3) for name, spent in self.timings.get(where, {}).items()}
