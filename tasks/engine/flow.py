"""One command's steps across its hosts: the state a list of steps works on (`Flow`), the
command's options (`Options`) and what it learned and did on each host (`HostState`).

Every host keeps one SSH connection for the whole command (its `Host`), so a step on a host
costs a session on that connection, never a new connection. The summary table, the JSON
summary and the record for ``--resume`` are `tasks.engine.summary`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from invoke import Context

from ..config import roles
from ..core.output import Output
from ..host.lockfile import LockOwner, new_id
from ..ssh import fanout
from ..ssh.host import Host
from .batches import batch_sizes, rounds

if TYPE_CHECKING:
    from ..build.archive import Build
    from ..config import Settings
    from ..host.canary import Traffic
    from ..host.converge import Drift
    from ..host.facts import Facts
    from ..host.lockfile import Deferred
    from ..host.releases import Inventory
    from ..ssh.fanout import GroupResult
    from .resume import Record
    from .step import Step


#: The summary's row of the local steps (`Flow.timings`).
LOCAL_ROW = "local"


@dataclass(frozen=True)
class Options:
    """What the command was asked, besides its hosts (deploy's, rollback's and
    ``upload.release``'s options)."""

    skip_tests: bool = False
    allow_dirty: bool = False
    break_lock: bool = False
    wanted: str = ""  # rollback: the release asked for
    force: bool = False  # deploy: even a revision every host already serves
    lock_wait: float = 0  # seconds to wait for a held deploy lock
    summary_json: str = ""  # a file to write the summary to as JSON
    ref: str = ""  # deploy: the git ref to deploy instead of the work tree
    resume: Record | None = None  # deploy --resume: the deploy it continues


@dataclass
class HostState:
    """What the command learned and did on one host, in the order its steps do it."""

    learned: str = ""  # what the lock's session learned, for `check`
    facts: Facts | None = None  # its Python, tags and what it serves
    inventory: Inventory | None = None  # its releases and venvs, as the lock found them
    served: str = ""  # the release it served before
    present: list[str] = field(default_factory=list)  # rollback: its complete releases
    drift: Drift | None = None  # deploy: setup's files to converge with the switch
    release: str = ""  # the release it is switched to
    archives: list[tuple[str, str]] = field(default_factory=list)  # shipped: (path, sha256)
    reused: bool = False  # --resume: it had the release complete already
    deferred: list[Deferred] = field(default_factory=list)  # scripts sent with the unlock
    result: str = ""  # how it ended ("serving R2", "prepare failed", ...)
    probes: dict[str, str] = field(default_factory=dict)  # CANARY_URLS after its switch
    access_from: int | None = None  # the canary: where its access log's new lines begin
    canary: Traffic | None = None  # the canary: what it served during its bake


@dataclass
class Flow:
    """One command's list of steps on its hosts (deploy, rollback, ``upload.release``,
    setup): what it was asked (`Options`), who holds its lock (commands that lock:
    `Flow.locking`), the release it built, and what happened on each host (`Flow.at`)."""

    c: Context
    settings: Settings
    hosts: list[Host]
    action: str = "deploy"
    options: Options = field(default_factory=Options)
    owner: LockOwner | None = None  # the lock's owner, with this command's deploy id
    build: Build | None = None
    states: dict[str, HostState] = field(default_factory=dict)  # host name -> `HostState`
    locked: list[Host] = field(default_factory=list)  # the hosts whose lock it holds
    steps: tuple[Step, ...] = ()  # the list being run (`tasks.engine.runner.execute`)
    done: bool = False  # a step found nothing more to do (a no-op deploy): stop there
    untested: bool = False  # deploy: built, its tests not passed yet: not recorded for --resume
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # row -> step -> seconds
    rounds: tuple[tuple[str, ...], ...] = ()  # the switch rounds, host names
    started: float = field(init=False)
    output: Output = field(init=False)

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.output = self.hosts[0].output if self.hosts else Output()

    @classmethod
    def locking(
        cls,
        c: Context,
        settings: Settings,
        hosts: list[Host],
        action: str,
        options: Options | None = None,
    ) -> Flow:
        """A command that takes the deploy lock: its deploy id (the resumed deploy's with
        ``--resume``), the same on every host, in the lock's owner."""
        options = options or Options()
        deploy_id = options.resume.id if options.resume else new_id()
        return cls(c, settings, hosts, action, options, LockOwner.mine(deploy_id=deploy_id))

    @property
    def id(self) -> str:
        """This command's deploy id, the same on every host ("" for one that takes no lock)."""
        return self.owner.deploy_id if self.owner else ""

    def at(self, host: Host | str) -> HostState:
        """What this command learned and did on ``host`` (a host or its name)."""
        name = host if isinstance(host, str) else host.name
        return self.states.setdefault(name, HostState())

    def results(self) -> dict[str, str]:
        """Each host that ended -> how it ended."""
        return {name: state.result for name, state in self.states.items() if state.result}

    def say(self, text: str) -> None:
        """Print a line that belongs to no host."""
        self.output.say(text)

    def defer(self, host: Host, label: str, body: str, env: dict[str, object]) -> None:
        """Send a script with the session that releases ``host``'s lock (one session less)."""
        self.at(host).deferred.append((label, body, env))

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

    def on(self, host: Host, name: str, step: Callable[[Flow, Host], object]) -> None:
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

    def primary(self, among: Sequence[Host] = ()) -> Host:
        """The host of this command's once-per-deploy work (`tasks.config.roles.primary`); of ``among``
        when the command has no hosts left (a resume that found every host done)."""
        return roles.primary(self.settings, self.hosts or among, lambda host: host.name)

    def serving_map(self) -> dict[str, str]:
        """Each host -> how it ended, or what it served before (for the ``failed`` hook)."""
        return {h.name: self.at(h).result or self.at(h).served or "nothing" for h in self.hosts}

    def serving(self) -> str:
        """``now serving: web1 R2, web2 back on R1``: which host serves what, for an error."""
        return "now serving: " + ", ".join(
            f"{name} {what}" for name, what in self.serving_map().items()
        )

    def canary(self) -> list[Host]:
        """The hosts of the first switch round when later rounds follow (none otherwise)."""
        batches = self.batches()
        return batches[0] if len(batches) > 1 else []

    def batches(self) -> list[list[Host]]:
        """The hosts in switch rounds of SWITCH_BATCH (the first host first: the canary)."""
        return rounds(self.hosts, batch_sizes(self.settings.switch_batch, len(self.hosts)))
