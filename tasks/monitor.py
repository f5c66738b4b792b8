"""Stage monitor: logs, status, health, resources and release history.

Each task sends one script per host (hosts in parallel), the script prints ``key=value``
lines (``scripts/status.sh``, ``resources.sh``, ``history.sh``; ``logs.sh`` prints the logs;
docs/scripts.md), and the parsing happens here, so what a host reports is plain data that
unit tests can feed in. A host is healthy when its health path answers 200 (`run.healthy`).
Nothing here finds processes by name: the gunicorn master comes from the pidfile, its
workers are the processes whose parent it is.

With ``--json``, status, health, resources and releases print one JSON document, a list with
an object per host (the shapes are in docs/json.md), and nothing else on stdout.

Exit codes: ``health`` exits 1 naming every unhealthy host; ``status``, ``resources`` and
``releases`` print a row for every host and then exit 1 if a host could not be asked;
``logs --follow`` runs until Ctrl-C and then exits 0.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from invoke import Collection, Task, task
from invoke.parser import Argument

from . import kv, remote, roles, run
from .config import Settings
from .errors import FabdeployError, HostError, detail
from .layout import Audit, Layout, Revision
from .remote import Host, Output
from .report import JSON_HELP, print_json, table

#: Seconds the health probe waits for the app to answer.
PROBE_TIMEOUT = 5
#: Seconds over which CPU use is sampled for `status`.
CPU_SAMPLE = 0.5
#: Addresses gunicorn may bind that mean "every interface": probe 127.0.0.1 instead.
WILDCARDS = {"0.0.0.0", "::", "[::]", "*", ""}


class FlagTask(Task):
    """A task whose options may be given short flags of our choosing (``short={"lines": "n"}``)."""

    def __init__(self, *args: Any, short: dict[str, str] | None = None, **kwargs: Any) -> None:
        self.short = dict(short or {})
        super().__init__(*args, **kwargs)

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        args = super().get_arguments(ignore_unknown_help)
        wanted = set(self.short.values())
        for arg in args:
            long_name = arg.names[0]
            chosen = self.short.get(arg.name) or self.short.get(long_name)
            shorts = [n for n in arg.names[1:] if n not in wanted]
            arg.names = (long_name, chosen) if chosen else (long_name, *shorts)
        return args


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def human_duration(seconds: float | None) -> str:
    """``3d04h``, ``2h05m``, ``5m12s``, ``42s``; empty for unknown."""
    if seconds is None or seconds < 0:
        return ""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{s:02d}s"
    return f"{s}s"


def human_kib(kib: int | None) -> str:
    """A size given in KiB as ``812K``, ``48.3M``, ``3.9G``; empty for unknown."""
    if kib is None:
        return ""
    if kib < 1024:
        return f"{kib}K"
    if kib < 1024 * 1024:
        return f"{kib / 1024:.1f}M"
    return f"{kib / 1024 / 1024:.1f}G"


def short_revision(revision: str) -> str:
    """A git hash cut to 12 characters; anything else as it is."""
    if len(revision) > 12 and all(ch in "0123456789abcdef" for ch in revision):
        return revision[:12]
    return revision


# --- running one script on every host ------------------------------------------------------


@dataclass
class Reply:
    """What one host answered: its ``key=value`` pairs, or why it could not answer."""

    host: str
    pairs: dict[str, str] = field(default_factory=dict)
    text: str = ""
    error: str = ""
    unreachable: bool = False


def ask(
    hosts: list[Host],
    settings: Settings,
    body: str,
    env: Callable[[Host], dict[str, object]],
    label: str,
) -> list[Reply]:
    """Run ``body`` once on every host (``settings.parallel`` at once), in host order."""

    def one(host: Host) -> Reply:
        try:
            host.open()
        except HostError as exc:
            return Reply(host.name, error=exc.detail, unreachable=True)
        result = host.script(body, env=env(host), hide=True, warn=True, label=label)
        reply = Reply(host.name, kv.parse(result.stdout), result.stdout)
        if result.failed and not reply.pairs:
            tail = host.output.clean((result.stderr or result.stdout).strip())[-500:]
            reply.error = f"{label} failed (exit {result.exited}): {tail}"
        return reply

    replies = []
    for host, reply, error in remote.each(hosts, one, settings.parallel):
        if isinstance(error, KeyboardInterrupt):
            raise error
        if error is not None:
            reply = Reply(host.name, error=detail(error))
        replies.append(reply)
    for host in hosts:
        host.close()
    return replies


def fail_if_unanswered(replies: Sequence[Reply | Status], what: str) -> None:
    """Name the hosts that gave no answer (after their rows were printed)."""
    failed = [r for r in replies if r.error]
    if failed:
        names = ", ".join(r.host for r in failed)
        raise FabdeployError(
            f"{what}: {len(failed)} of {len(replies)} hosts did not answer: {names}"
        )


def report_errors(output: Output, replies: Sequence[Reply | Status]) -> None:
    """One line per host that gave no answer, prefixed with the host."""
    for reply in replies:
        if reply.error:
            output.line(reply.host, reply.error, err=True)


def _base_env(host: Host) -> dict[str, object]:
    settings = host.settings
    paths = Layout(settings.deploy_root)
    return {
        "ROOT": paths.root,
        "RELEASES": paths.releases,
        "CURRENT": paths.current,
        "PIDFILE": paths.pidfile,
        "LOGDIR": paths.logs,
        "REVLOG": paths.revisions_log,
        "UNIT": settings.service,
        "PY": settings.python,
    }


def process_env(host: Host) -> dict[str, object]:
    """``WEB`` (yes/no) and ``PROCESS_UNITS``: what the host's roles run, for the scripts."""
    settings = host.settings
    units = [f"{name} {settings.unit(name)}" for name in roles.companions_of(settings, host.name)]
    return {
        "WEB": "yes" if roles.serves_web(settings, host.name) else "no",
        "PROCESS_UNITS": "\n".join(units),
    }


# --- status and health ---------------------------------------------------------------------


def probe_host(bind: str) -> str:
    """Where the probe connects: the bound address, or 127.0.0.1 for a wildcard bind."""
    address = bind.rpartition(":")[0]
    if address in WILDCARDS:
        return "127.0.0.1"
    return address.strip("[]")


@dataclass
class Status:
    """One host's service, release, processes and health, parsed from the status script."""

    host: str
    error: str = ""
    unreachable: bool = False
    state: str = "unknown"
    state_detail: str = ""
    release: str = ""
    release_missing: bool = False
    revision: Revision | None = None
    pid: int | None = None
    pid_alive: bool | None = None
    workers: int | None = None
    rss_kb: int | None = None
    cpu: float | None = None
    uptime: float | None = None
    health_status: int | None = None
    health_ms: float | None = None
    health_error: str = ""
    web: bool = True  # the host runs the web process (its roles say so)
    processes: dict[str, str] = field(default_factory=dict)  # companion unit -> its state

    @classmethod
    def parse(cls, host: str, text: str) -> Status:
        """The `Status` in the status script's output."""
        pairs = kv.parse(text)
        status = cls(host)
        state = pairs.get("state", "")
        if state and state.replace("-", "").isalpha() and state.islower():
            status.state = state
        else:
            status.state_detail = state or "no answer from systemctl"
        status.release = pairs.get("release", "")
        status.release_missing = pairs.get("release_missing") == "yes"
        encoded = pairs.get("revision_file", "")
        if encoded:
            try:
                status.revision = Revision.parse(base64.b64decode(encoded).decode("utf-8"))
            except ValueError:
                status.revision = None
        status.pid = _int(pairs.get("pid"))
        alive = pairs.get("pid_alive")
        status.pid_alive = None if alive is None else alive == "yes"
        status.workers = _int(pairs.get("workers"))
        status.rss_kb = _int(pairs.get("rss_kb"))
        status.cpu = _float(pairs.get("cpu"))
        status.uptime = _float(pairs.get("uptime"))
        status.health_status = _int(pairs.get("health_status"))
        status.health_ms = _float(pairs.get("health_ms"))
        status.health_error = pairs.get("health_error", "") or pairs.get("probe_error", "")
        status.web = pairs.get("web", "yes") != "no"
        status.processes = {
            key.removeprefix("process_"): value or "unknown"
            for key, value in pairs.items()
            if key.startswith("process_")
        }
        return status

    @classmethod
    def from_reply(cls, reply: Reply) -> Status:
        if reply.error:
            return cls(reply.host, error=reply.error, unreachable=reply.unreachable, state="")
        return cls.parse(reply.host, reply.text)

    @property
    def healthy(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        """Why this host is unhealthy, in words; empty when it is healthy."""
        if self.error:
            return [("unreachable: " if self.unreachable else "") + self.error]
        found = []
        if self.web and self.state != "active":
            why = f" ({self.state_detail})" if self.state_detail else ""
            found.append(f"service {self.state}{why}")
        if self.web and self.pid_alive is False:
            found.append(f"gunicorn pid {self.pid} from the pidfile is not running")
        if self.release_missing:
            found.append(f"current points to a missing release {self.release}")
        elif not self.release:
            found.append("no current release")
        if self.web and not self.health_ok:
            found.append(f"health check {self.health_text()}")
        found += [
            f"process {name} {state}" for name, state in self.processes.items() if state != "active"
        ]
        return found

    def processes_text(self) -> str:
        """``worker active, beat failed``: each companion process and its state."""
        return ", ".join(f"{name} {state}" for name, state in self.processes.items())

    @property
    def health_ok(self) -> bool:
        """The health path answered 200: the one rule (`run.healthy`, docs/scripts.md)."""
        return self.health_status is not None and run.healthy(self.health_status)

    def health_text(self) -> str:
        """``HTTP 200`` or the reason the probe failed."""
        if self.health_status is not None:
            return f"HTTP {self.health_status}"
        return self.health_error or "no health check"

    def latency(self) -> str:
        return "" if self.health_ms is None else f"{self.health_ms:.0f} ms"

    def to_json(self) -> dict[str, Any]:
        """The host's object in ``status --json`` and ``health --json`` (docs/json.md)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "revision"}
        data["revision"] = asdict(self.revision) if self.revision else None
        data["state"] = self.state if not self.error else None
        data["healthy"] = self.healthy
        data["problems"] = self.problems()
        return data

    def row(self) -> list[object]:
        """The `status` table row."""
        if self.error:
            state = "unreachable" if self.unreachable else "error"
            return [self.host, state]
        rev = self.revision
        return [
            self.host,
            self.state,
            self.release + (" (missing)" if self.release_missing else "") or "-",
            short_revision(rev.revision) if rev else "",
            rev.user if rev else "",
            rev.time if rev else "",
            ("" if self.pid is None else str(self.pid))
            + (" (dead)" if self.pid_alive is False else ""),
            human_duration(self.uptime) if self.pid_alive else "",
            "" if self.workers is None else self.workers,
            human_kib(self.rss_kb) if self.pid_alive else "",
            "" if self.cpu is None else f"{self.cpu:.1f}%",
            self.health_text() + (f" {self.latency()}" if self.latency() else "")
            if self.web
            else "no web process",
        ]


STATUS_HEADERS = (
    "HOST",
    "STATE",
    "RELEASE",
    "REVISION",
    "DEPLOYED BY",
    "DEPLOYED AT",
    "PID",
    "UPTIME",
    "WORKERS",
    "RSS",
    "CPU",
    "HEALTH",
)


def gather_status(hosts: list[Host], settings: Settings, *, sample: bool) -> list[Status]:
    """`Status` of every host, asked in parallel with one script each."""

    def env(host: Host) -> dict[str, object]:
        return {
            **_base_env(host),
            "PROBE_HOST": probe_host(settings.bind),
            "PORT": settings.port,
            "HEALTH_PATH": settings.health_path,
            "HEALTH_HOST": settings.health_host,
            "SAMPLE": CPU_SAMPLE if sample else 0,
            "TIMEOUT": PROBE_TIMEOUT,
            "STATUS_PY": remote.script_file("status.py"),
            **process_env(host),
        }

    replies = ask(hosts, settings, remote.shell("status"), env, "status")
    return [Status.from_reply(reply) for reply in replies]


def render_status(statuses: list[Status]) -> str:
    """The status table; a PROCESSES column when a host runs companion processes."""
    if not any(s.processes for s in statuses):
        return table(STATUS_HEADERS, [s.row() for s in statuses], right="PID,WORKERS,RSS,CPU")
    rows = [s.row() + [""] * (len(STATUS_HEADERS) - len(s.row())) for s in statuses]
    rows = [[*row, s.processes_text()] for row, s in zip(rows, statuses)]
    return table((*STATUS_HEADERS, "PROCESSES"), rows, right="PID,WORKERS,RSS,CPU")


def show(
    hosts: list[Host], items: Sequence[Reply | Status | Resources | History], text: str | None
) -> None:
    """Print ``text`` (the table), or with None the items as one JSON document on stdout."""
    output = hosts[0].output
    if text is None:
        print_json([item.to_json() for item in items], output.clean)  # type: ignore[union-attr]
    else:
        output.say(text)


#: ``--roles`` of the tasks that take it.
ROLES_HELP = "only the hosts of these roles (ROLE_<NAME>), comma-separated"


@task(name="status", help={"json": JSON_HELP, "roles": ROLES_HELP})
def status(c, json=False, roles=""):  # type: ignore[no-untyped-def]
    """Show service state, release, revision, pid, uptime, memory, CPU and health per host."""
    settings, hosts = remote.session(c, data_on_stdout=json, roles=roles)
    statuses = gather_status(hosts, settings, sample=True)
    show(hosts, statuses, None if json else render_status(statuses))
    report_errors(hosts[0].output, statuses)
    why = refused(settings, statuses)
    if why:
        hosts[0].output.line("", why, err=True)
    fail_if_unanswered(statuses, "status")


def refused(settings: Settings, statuses: Sequence[Status]) -> str:
    """`run.refused_host` when some host's health path answered 400 ("" otherwise)."""
    sent = run.host_header(settings, f"http://{probe_host(settings.bind)}:{settings.port}")
    found = (run.refused_host(settings, s.health_status, sent) for s in statuses)
    return next((why for why in found if why), "")


def health_line(s: Status) -> str:
    """One line for `health`: healthy with latency and release, or what is wrong."""
    if s.healthy:
        rev = f" ({short_revision(s.revision.revision)})" if s.revision else ""
        return f"healthy: {s.health_text()} in {s.latency()}, release {s.release}{rev}"
    return "UNHEALTHY: " + "; ".join(s.problems())


@task(name="health", help={"json": JSON_HELP})
def health(c, json=False):  # type: ignore[no-untyped-def]
    """Check service and health path on every host; exit 1 naming unhealthy ones (for cron/CI)."""
    settings, hosts = remote.session(c, data_on_stdout=json)
    statuses = gather_status(hosts, settings, sample=False)
    output = hosts[0].output
    if json:
        show(hosts, statuses, None)
    for s in statuses if not json else []:
        output.line(s.host, health_line(s), err=not s.healthy)
    sick = [s for s in statuses if not s.healthy]
    if sick:
        sick_hosts = "; ".join(f"{s.host} ({', '.join(s.problems())})" for s in sick)
        why = refused(settings, sick)
        raise FabdeployError(
            f"{len(sick)} of {len(statuses)} hosts unhealthy: {sick_hosts}"
            + (f". {why}" if why else "")
        )


# --- resources -----------------------------------------------------------------------------


@dataclass
class Resources:
    """One host's load, memory, disk and release count."""

    host: str
    error: str = ""
    unreachable: bool = False
    load: str = ""
    cpus: int | None = None
    mem_total_kb: int | None = None
    mem_available_kb: int | None = None
    disk_path: str = ""
    disk_total_kb: int | None = None
    disk_free_kb: int | None = None
    releases: int | None = None
    current: str = ""

    @classmethod
    def parse(cls, host: str, text: str) -> Resources:
        p = kv.parse(text)
        return cls(
            host,
            load=p.get("load", ""),
            cpus=_int(p.get("cpus")),
            mem_total_kb=_int(p.get("mem_total_kb")),
            mem_available_kb=_int(p.get("mem_available_kb")),
            disk_path=p.get("disk_path", ""),
            disk_total_kb=_int(p.get("disk_total_kb")),
            disk_free_kb=_int(p.get("disk_free_kb")),
            releases=_int(p.get("releases")),
            current=p.get("current", ""),
        )

    def to_json(self) -> dict[str, Any]:
        """The host's object in ``resources --json`` (docs/json.md): load as three numbers."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["load"] = [float(x) for x in self.load.split()] if self.load else None
        return data

    @classmethod
    def from_reply(cls, reply: Reply) -> Resources:
        if reply.error:
            return cls(reply.host, error=reply.error, unreachable=reply.unreachable)
        return cls.parse(reply.host, reply.text)

    def row(self) -> list[object]:
        if self.error:
            return [self.host, "unreachable" if self.unreachable else "error"]
        memory = ""
        if self.mem_total_kb and self.mem_available_kb is not None:
            used = self.mem_total_kb - self.mem_available_kb
            memory = (
                f"{human_kib(used)}/{human_kib(self.mem_total_kb)} "
                f"({used * 100 // self.mem_total_kb}%)"
            )
        disk = ""
        if self.disk_total_kb and self.disk_free_kb is not None:
            disk = f"{human_kib(self.disk_free_kb)} of {human_kib(self.disk_total_kb)}"
        return [
            self.host,
            self.load,
            "" if self.cpus is None else self.cpus,
            memory,
            disk,
            "" if self.releases is None else self.releases,
            self.current,
        ]


RESOURCES_HEADERS = (
    "HOST",
    "LOAD 1/5/15",
    "CPUS",
    "MEMORY USED",
    "DISK FREE",
    "RELEASES",
    "CURRENT",
)


def render_resources(items: list[Resources]) -> str:
    return table(RESOURCES_HEADERS, [r.row() for r in items], right="CPUS,RELEASES")


@task(name="resources", help={"json": JSON_HELP})
def resources(c, json=False):  # type: ignore[no-untyped-def]
    """Show load, memory, disk free under the deploy root and the releases kept, per host."""
    settings, hosts = remote.session(c, data_on_stdout=json)
    replies = ask(hosts, settings, remote.shell("resources"), _base_env, "resources")
    items = [Resources.from_reply(r) for r in replies]
    show(hosts, items, None if json else render_resources(items))
    report_errors(hosts[0].output, replies)
    fail_if_unanswered(replies, "resources")


# --- releases ------------------------------------------------------------------------------


@dataclass
class History:
    """One host's revisions.log (newest first) and the release `current` points to."""

    host: str
    error: str = ""
    unreachable: bool = False
    current: str = ""
    has_log: bool = False
    entries: list[Audit] = field(default_factory=list)

    @classmethod
    def parse(cls, host: str, text: str, limit: int = 0) -> History:
        pairs = kv.parse(text)
        entries = []
        for line in text.splitlines():
            if line.startswith("audit "):
                audit = Audit.parse(line[len("audit ") :])
                if audit is not None:
                    entries.append(audit)
        entries.reverse()  # appended in order: the last line is the newest
        if limit > 0:
            entries = entries[:limit]
        return cls(host, current=pairs.get("current", ""), has_log="log" in pairs, entries=entries)

    @classmethod
    def from_reply(cls, reply: Reply, limit: int = 0) -> History:
        if reply.error:
            return cls(reply.host, error=reply.error, unreachable=reply.unreachable)
        return cls.parse(reply.host, reply.text, limit)

    def current_index(self) -> int | None:
        """The entry that made `current` current: the newest successful one naming it."""
        for i, audit in enumerate(self.entries):
            if audit.release == self.current and audit.result == "ok":
                return i
        for i, audit in enumerate(self.entries):
            if audit.release == self.current:
                return i
        return None

    def to_json(self) -> dict[str, Any]:
        """The host's object in ``releases --json`` (docs/json.md): entries newest first."""
        marked = self.current_index()
        return {
            "host": self.host,
            "error": self.error,
            "unreachable": self.unreachable,
            "current": self.current,
            "has_log": self.has_log,
            "entries": [{**asdict(a), "current": i == marked} for i, a in enumerate(self.entries)],
        }

    def rows(self) -> list[list[object]]:
        if self.error:
            return [[self.host, "", "unreachable" if self.unreachable else "error"]]
        if not self.entries:
            why = "(no deploys recorded)" if not self.has_log or not self.current else "(none)"
            return [[self.host, "*" if self.current else "", self.current or why]]
        marked = self.current_index()
        return [
            [
                self.host,
                "*" if i == marked else "",
                a.release,
                a.action,
                a.result,
                short_revision(a.revision),
                a.user,
                a.time,
            ]
            for i, a in enumerate(self.entries)
        ]


RELEASES_HEADERS = ("HOST", "", "RELEASE", "ACTION", "RESULT", "REVISION", "BY", "TIME")


def render_releases(histories: list[History]) -> str:
    rows = [row for h in histories for row in h.rows()]
    return table(RELEASES_HEADERS, rows)


@task(
    name="releases",
    klass=FlagTask,
    short={"limit": "n"},
    help={
        "limit": "Show at most N entries per host, newest first (0: all; default 20)",
        "json": JSON_HELP,
    },
)
def releases(c, limit=20, json=False):  # type: ignore[no-untyped-def]
    """List the deploy history from revisions.log, newest first; * marks the current release."""
    settings, hosts = remote.session(c, data_on_stdout=json)
    limit = int(limit)

    def env(host: Host) -> dict[str, object]:
        return {**_base_env(host), "LIMIT": max(limit, 0)}

    replies = ask(hosts, settings, remote.shell("history"), env, "releases")
    histories = [History.from_reply(r, limit) for r in replies]
    show(hosts, histories, None if json else render_releases(histories))
    report_errors(hosts[0].output, replies)
    fail_if_unanswered(replies, "releases")


# --- logs ----------------------------------------------------------------------------------


def log_patterns(settings: Settings) -> list[str]:
    """``error.log`` and the LOG_FILES globs, relative to shared/log, without repeats."""
    patterns = ["error.log"]
    for pattern in settings.log_files:
        pattern = pattern.strip().lstrip("/")
        if pattern and pattern not in patterns:
            patterns.append(pattern)
    return patterns


def logs_env(host: Host, lines: int, follow: bool) -> dict[str, object]:
    return {
        **_base_env(host),
        "PATTERNS": "\n".join(log_patterns(host.settings)),
        "LINES": max(int(lines), 0),
        "FOLLOW": "yes" if follow else "no",
        **process_env(host),
    }


def follow_logs(hosts: list[Host], lines: int) -> None:
    """Stream every host's logs at once (a thread and one command per host) until Ctrl-C.

    Ctrl-C closes every connection, which ends each remote script (it waits for its stdin to
    close, then stops journalctl and tail) and returns quietly. A host that could not stream
    is reported at once and, at the end, makes the task exit 1.
    """
    stopping = threading.Event()
    errors: dict[str, str] = {}

    def stream(host: Host) -> None:
        try:
            host.open()
            result = host.script(
                remote.shell("logs"), env=logs_env(host, lines, True), warn=True, label="logs"
            )
            if result.failed and not stopping.is_set():
                errors[host.name] = f"log stream ended (exit {result.exited})"
        except Exception as exc:  # reported per host
            if not stopping.is_set():
                errors[host.name] = detail(exc)
        if host.name in errors:
            host.output.line(host.name, errors[host.name], err=True)

    threads = [
        threading.Thread(target=stream, args=(h,), name=f"logs-{h.name}", daemon=True)
        for h in hosts
    ]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.2)
    except KeyboardInterrupt:
        stopping.set()
    try:
        for host in hosts:
            host.close()  # ends each channel: the remote script sees EOF and stops
        for thread in threads:
            thread.join(2)
    except KeyboardInterrupt:  # a second Ctrl-C while closing
        pass
    if errors:
        raise FabdeployError(
            f"logs: {len(errors)} of {len(hosts)} hosts could not stream: {', '.join(errors)}"
        )


@task(
    name="logs",
    klass=FlagTask,
    short={"lines": "n", "follow": "f"},
    help={
        "lines": "Lines of the journal and of each log file to show first (default 50)",
        "follow": "Keep streaming new lines from every host until Ctrl-C (exits 0)",
        "roles": ROLES_HELP,
    },
)
def logs(c, lines=50, follow=False, roles=""):  # type: ignore[no-untyped-def]
    """Show the journals of the service and its processes, and the app's log files."""
    settings, hosts = remote.session(c, roles=roles)
    if follow:
        follow_logs(hosts, int(lines))
        return
    replies = ask(
        hosts, settings, remote.shell("logs"), lambda h: logs_env(h, int(lines), False), "logs"
    )
    output = hosts[0].output
    for reply in replies:
        if not reply.error:
            output.line(reply.host, reply.text.rstrip("\n"))
    report_errors(output, replies)
    fail_if_unanswered(replies, "logs")


ns = Collection("monitor")
ns.add_task(status, default=True)
ns.add_task(logs)
ns.add_task(health)
ns.add_task(resources)
ns.add_task(releases)
