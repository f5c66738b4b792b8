"""``resources``: CPU, memory and disk of the app on a host (``scripts/resources.sh``,
parsed by `Resources`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ..core import kv, shell
from ..core.report import human_kib, table
from ..ssh.fanout import ask
from .status import base_env, to_int

if TYPE_CHECKING:
    from ..config import Settings
    from ..ssh.fanout import Reply
    from ..ssh.host import Host


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
            cpus=to_int(p.get("cpus")),
            mem_total_kb=to_int(p.get("mem_total_kb")),
            mem_available_kb=to_int(p.get("mem_available_kb")),
            disk_path=p.get("disk_path", ""),
            disk_total_kb=to_int(p.get("disk_total_kb")),
            disk_free_kb=to_int(p.get("disk_free_kb")),
            releases=to_int(p.get("releases")),
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


def gather(hosts: list[Host], settings: Settings) -> tuple[list[Resources], list[Reply]]:
    """Every host's resources (``scripts/resources.sh``, PARALLEL at once), and the replies."""
    replies = ask(hosts, settings, shell.shell("resources"), base_env, "resources")
    return [Resources.from_reply(reply) for reply in replies], replies
