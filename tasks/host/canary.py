"""What a host serves right after its switch: the probes of CANARY_URLS (run by the switch
itself, ``scripts/switch.sh``) and the canary's bake (``scripts/canary.sh``): the requests its
gunicorn wrote to the access log since the switch, counted by status code, the probes again,
and the one rule that judges them (`verdict`).

The access log is the app user's (shared/log): ``canary.sh`` reads it as the app user, as
``fab logs`` does. Its lines are gunicorn's default ``access_log_format``, whose status follows
the quoted request line (``"GET / HTTP/1.1" 500 141 ...``); a line without one is counted as
unparsed, never guessed. fabdeploy's own probes (health checks included) send the User-Agent
`AGENT` and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core import kv, shell
from ..core.paths import layout
from .service import failing, probe_netloc

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.host import Host


#: The User-Agent of every probe lib.sh's ``probe`` sends (its lines are not the app's traffic).
AGENT = "fabdeploy-probe"


#: Seconds between two looks at a baking canary.
POLL = 2.0


def probe_urls(settings: Settings) -> list[str]:
    """The URLs of CANARY_URLS as a probe on the host requests them (`probe_netloc`)."""
    return [f"http://{probe_netloc(settings)}{path}" for path in settings.canary_urls]


@dataclass
class Traffic:
    """What a canary served since its switch, as its access log and the probes tell it."""

    codes: dict[str, int] = field(default_factory=dict)  # HTTP status -> requests
    ours: int = 0  # fabdeploy's own probes, not counted
    unparsed: int = 0  # lines without a status where gunicorn's default format has it
    probes: dict[str, str] = field(default_factory=dict)  # URL -> its last status
    failed_probes: dict[str, str] = field(default_factory=dict)  # URL -> the failing status
    failed_paths: dict[str, int] = field(default_factory=dict)  # path -> its 5xx answers
    offset: int = 0  # bytes of the access log counted
    rotated: bool = False  # the log was truncated (logrotate) while baking
    missing: bool = False  # no access log to read
    seconds: float = 0.0  # how long it baked

    @property
    def requests(self) -> int:
        """The requests the app served (fabdeploy's probes not counted)."""
        return sum(self.codes.values())

    @property
    def errors(self) -> int:
        """Of them, those that answered a 5xx."""
        return sum(count for code, count in self.codes.items() if code.startswith("5"))

    @property
    def rate(self) -> float:
        """The 5xx rate, in percent (0 without requests)."""
        return 100.0 * self.errors / self.requests if self.requests else 0.0

    @classmethod
    def parse(cls, text: str) -> Traffic:
        """One look's answer (``scripts/canary.sh``'s ``key=value`` lines)."""
        found = kv.parse(text)
        codes: dict[str, int] = {}
        for item in found.get("codes", "").split():
            code, _, count = item.partition(":")
            if code.isdigit() and count.isdigit():
                codes[code] = codes.get(code, 0) + int(count)
        probes = {}
        for item in found.get("probes", "").split():
            code, _, url = item.partition("@")
            if url:
                probes[url] = code
        paths: dict[str, int] = {}
        for item in found.get("failed", "").split():
            count, _, path = item.partition(":")
            if count.isdigit() and path:
                paths[path] = paths.get(path, 0) + int(count)
        number = found.get("offset", "0")
        return cls(
            codes=codes,
            ours=int(found.get("ours", "0") or 0),
            unparsed=int(found.get("unparsed", "0") or 0),
            probes=probes,
            failed_probes={url: code for url, code in probes.items() if failing(code)},
            failed_paths=paths,
            offset=int(number) if number.isdigit() else 0,
            rotated=found.get("rotated") == "yes",
            missing=found.get("missing") == "yes",
        )

    def add(self, later: Traffic) -> Traffic:
        """These figures and a later look's, together (the later look's offset and probes)."""
        codes = dict(self.codes)
        for code, count in later.codes.items():
            codes[code] = codes.get(code, 0) + count
        paths = dict(self.failed_paths)
        for path, count in later.failed_paths.items():
            paths[path] = paths.get(path, 0) + count
        return Traffic(
            codes=codes,
            failed_paths=paths,
            ours=self.ours + later.ours,
            unparsed=self.unparsed + later.unparsed,
            probes={**self.probes, **later.probes},
            failed_probes={**self.failed_probes, **later.failed_probes},
            offset=later.offset,
            rotated=self.rotated or later.rotated,
            missing=later.missing,
            seconds=self.seconds,
        )

    def line(self) -> str:
        """``120 requests, 3 answered 5xx (2.5%) in 30s, by path: /cart 3; probes:
        http://.../ 200``, for the summary."""
        text = (
            f"{self.requests} requests, {self.errors} answered 5xx ({self.rate:.1f}%)"
            f" in {self.seconds:.0f}s"
        )
        return text + self.detail()

    def detail(self) -> str:
        """The paths that answered 5xx, what could not be read, and the probes' last status."""
        text = ""
        if self.failed_paths:
            text += ", by path: " + ", ".join(f"{path} {n}" for path, n in self.worst())
        if self.unparsed:
            text += f", {self.unparsed} access log lines without a status"
        if self.missing:
            text += ", no access log"
        if self.probes:
            text += "; probes: " + ", ".join(
                f"{url} {self.failed_probes.get(url, code)}" for url, code in self.probes.items()
            )
        return text

    def worst(self, most: int = 5) -> list[tuple[str, int]]:
        """The paths that answered 5xx most often, with how often (``most`` of them)."""
        return sorted(self.failed_paths.items(), key=lambda item: (-item[1], item[0]))[:most]

    def data(self) -> dict[str, object]:
        """The figures as JSON data (docs/json.md)."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rate": round(self.rate, 2),
            "codes": dict(sorted(self.codes.items())),
            "unparsed": self.unparsed,
            "seconds": round(self.seconds, 3),
            "probes": dict(self.probes),
            "failed_probes": dict(self.failed_probes),
            "failed_paths": dict(self.worst(20)),
        }


def verdict(traffic: Traffic, settings: Settings) -> str:
    """Why the canary fails ("" it does not): a probe that answered a 5xx (or nothing), or a
    5xx rate over CANARY_MAX_5XX once CANARY_MIN_REQUESTS requests were seen."""
    if traffic.failed_probes:
        return "; ".join(
            f"probe {url} answered {code}" for url, code in traffic.failed_probes.items()
        )
    enough = traffic.requests >= settings.canary_min_requests
    if enough and traffic.errors * 100 > settings.canary_max_5xx * traffic.requests:
        return (
            f"{traffic.errors} of {traffic.requests} requests answered 5xx ({traffic.rate:.1f}%, "
            f"over CANARY_MAX_5XX={settings.canary_max_5xx}%)"
        )
    return ""


def look(host: Host, offset: int) -> Traffic:
    """One look at the canary (``scripts/canary.sh``): its access log from ``offset``, and the
    probes once more."""
    settings = host.settings
    result = host.script(
        shell.shell("canary"),
        env={
            "APP_USER": host.app_user,
            "ACCESS_LOG": layout(settings).access_log,
            "OFFSET": offset,
            "AGENT": AGENT,
            "PROBE_URLS": "\n".join(probe_urls(settings)),
            "HEALTH_HOST": settings.health_host,
        },
        hide=True,
        label="canary",
    )
    return Traffic.parse(result.stdout)
