"""``status``: a host's service, release, processes and health (``scripts/status.sh``,
parsed by `Status`)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from ..config import roles
from ..core import kv, secretsfile, shell
from ..core.paths import layout
from ..core.records import Revision
from ..core.report import human_duration, human_kib, short_revision, table
from ..ssh.fanout import ask
from . import service
from . import units as host_units

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.fanout import Reply
    from ..ssh.host import Host


#: Seconds the health probe waits for the app to answer.
PROBE_TIMEOUT = 5


#: Seconds over which CPU use is sampled for `status`.
CPU_SAMPLE = 0.5


def to_int(value: str | None) -> int | None:
    """A script's number, or None for empty or unreadable."""
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def to_float(value: str | None) -> float | None:
    """A script's decimal, or None for empty or unreadable."""
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def base_env(host: Host) -> dict[str, object]:
    settings = host.settings
    paths = layout(settings)
    return {
        "ROOT": paths.root,
        "RELEASES": paths.releases,
        "CURRENT": paths.current,
        "PIDFILE": paths.pidfile,
        "APP_USER": host.app_user,
        "LOGDIR": paths.logs,
        "REVLOG": paths.revisions_log,
        "UNIT": host_units.service_unit(settings),
        "PY": settings.python,
    }


def process_env(host: Host) -> dict[str, object]:
    """``WEB`` (yes/no) and ``PROCESS_UNITS``: what the host's roles run, for the scripts."""
    settings = host.settings
    units = [
        f"{name} {host_units.unit_name(settings, name)}"
        for name in roles.companions_of(settings, host.name)
    ]
    return {
        "WEB": "yes" if roles.serves_web(settings, host.name) else "no",
        "PROCESS_UNITS": "\n".join(units),
    }


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
    settings: dict[str, str] | None = None  # the app settings the host holds (None: not read)

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
        status.pid = to_int(pairs.get("pid"))
        alive = pairs.get("pid_alive")
        status.pid_alive = None if alive is None else alive == "yes"
        status.workers = to_int(pairs.get("workers"))
        status.rss_kb = to_int(pairs.get("rss_kb"))
        status.cpu = to_float(pairs.get("cpu"))
        status.uptime = to_float(pairs.get("uptime"))
        status.health_status = to_int(pairs.get("health_status"))
        status.health_ms = to_float(pairs.get("health_ms"))
        status.health_error = pairs.get("health_error", "") or pairs.get("probe_error", "")
        status.web = pairs.get("web", "yes") != "no"
        status.processes = {
            key.removeprefix("process_"): value or "unknown"
            for key, value in pairs.items()
            if key.startswith("process_")
        }
        if "settings_file" in pairs:
            text = base64.b64decode(pairs["settings_file"]).decode("utf-8", "replace")
            status.settings = secretsfile.parse(text)
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
        """The health path answered 200: the one rule (`service.healthy`, docs/scripts.md)."""
        return self.health_status is not None and service.healthy(self.health_status)

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
            **base_env(host),
            "PROBE_HOST": service.probe_address(settings.bind),
            "PORT": settings.port,
            "HEALTH_PATH": settings.health_path,
            "HEALTH_HOST": settings.health_host,
            "SAMPLE": CPU_SAMPLE if sample else 0,
            "TIMEOUT": PROBE_TIMEOUT,
            "STATUS_PY": shell.script_file("status.py"),
            "SETTINGS": layout(settings).settings_file if settings.app_env else "",
            **process_env(host),
        }

    replies = ask(hosts, settings, shell.shell("status"), env, "status")
    return [Status.from_reply(reply) for reply in replies]


def render_status(statuses: list[Status]) -> str:
    """The status table; a PROCESSES column when a host runs companion processes."""
    if not any(s.processes for s in statuses):
        return table(STATUS_HEADERS, [s.row() for s in statuses], right="PID,WORKERS,RSS,CPU")
    rows = [s.row() + [""] * (len(STATUS_HEADERS) - len(s.row())) for s in statuses]
    rows = [[*row, s.processes_text()] for row, s in zip(rows, statuses)]
    return table((*STATUS_HEADERS, "PROCESSES"), rows, right="PID,WORKERS,RSS,CPU")


def settings_lines(statuses: Sequence[Status]) -> list[str]:
    """Each host's app settings as it holds them, in clear (they are not secrets): one line a
    host whose settings were read."""
    return [
        f"settings {s.host}: "
        + (" ".join(f"{name}={value}" for name, value in s.settings.items()) or "none")
        for s in statuses
        if s.settings is not None and not s.error
    ]


def refused(settings: Settings, statuses: Sequence[Status]) -> str:
    """`service.refused_host` when some host's health path answered 400 ("" otherwise)."""
    sent = service.host_header(settings, service.health_url(settings))
    found = (service.refused_host(settings, s.health_status, sent) for s in statuses)
    return next((why for why in found if why), "")


def health_line(s: Status) -> str:
    """One line for `health`: healthy with latency and release, or what is wrong."""
    if s.healthy:
        rev = f" ({short_revision(s.revision.revision)})" if s.revision else ""
        return f"healthy: {s.health_text()} in {s.latency()}, release {s.release}{rev}"
    return "UNHEALTHY: " + "; ".join(s.problems())
