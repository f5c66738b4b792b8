"""``releases``: the releases on a host and the revisions.log history (``scripts/history.sh``,
parsed by `History`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..core import kv, shell
from ..core.records import Audit
from ..core.report import short_revision, table
from ..ssh.fanout import ask
from .status import base_env

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.fanout import Reply
    from ..ssh.host import Host


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


def gather(hosts: list[Host], settings: Settings, limit: int) -> tuple[list[History], list[Reply]]:
    """Every host's last ``limit`` revisions.log lines and releases (``scripts/history.sh``)."""

    def env(host: Host) -> dict[str, object]:
        return {**base_env(host), "LIMIT": max(limit, 0)}

    replies = ask(hosts, settings, shell.shell("history"), env, "releases")
    return [History.from_reply(reply, limit) for reply in replies], replies
