"""The key=value records fabdeploy keeps on a host: REVISION in a release
(`Revision`) and the lines of revisions.log (`Audit`), written and parsed in one place."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TypeVar

from . import kv


@dataclass(frozen=True)
class Audit:
    """One line of revisions.log: a deploy or rollback, as it ended."""

    time: str  # ISO 8601 UTC, e.g. 2026-11-24T08:15:00Z
    action: str  # deploy | rollback
    release: str
    revision: str
    user: str  # who ran it: local user@machine
    result: str  # ok | failed | broken (a lock broken)
    detail: str = ""  # break-lock: whose lock it was; written only when set
    deploy_id: str = ""  # the deploy's id, the same on every host; written only when set

    def format(self) -> str:
        """The tab-separated line written to revisions.log (no newline)."""
        return "\t".join(
            f"{f.name}={getattr(self, f.name)}".replace("\t", " ").replace("\n", " ")
            for f in fields(self)
            if f.name not in OPTIONAL or getattr(self, f.name)
        )

    @classmethod
    def parse(cls, line: str) -> Audit | None:
        """The `Audit` a line holds, or None for a line that is not one."""
        return _parse(cls, kv.parse(line, "\t"))


@dataclass(frozen=True)
class Revision:
    """The REVISION file in each release: what it was built from, by whom, when."""

    revision: str
    release: str
    user: str
    time: str
    deploy_id: str = ""  # the deploy that made it, the same id on every host
    content: str = ""  # what it is made of (`tasks.build.content`): the no-op rule's evidence

    def format(self) -> str:
        """The file's text: ``key=value`` lines."""
        return "".join(
            f"{f.name}={getattr(self, f.name)}\n"
            for f in fields(self)
            if f.name not in OPTIONAL or getattr(self, f.name)
        )

    @classmethod
    def parse(cls, text: str) -> Revision | None:
        """The `Revision` in a REVISION file's text, or None if it is not one."""
        return _parse(cls, kv.parse(text))


#: Fields of `Audit` and `Revision` written only when set (files from older versions lack them).
OPTIONAL = ("detail", "deploy_id", "content")


Parsed = TypeVar("Parsed", Audit, Revision)


def _parse(cls: type[Parsed], values: dict[str, str]) -> Parsed | None:
    """``cls`` from ``key=value`` pairs; None when a required field is missing."""
    try:
        return cls(
            **{f.name: values[f.name] for f in fields(cls) if f.name not in OPTIONAL},
            **{f.name: values.get(f.name, "") for f in fields(cls) if f.name in OPTIONAL},
        )
    except KeyError:
        return None
