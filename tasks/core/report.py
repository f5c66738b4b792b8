"""What a command prints at its end: aligned plain-text tables, or one JSON document."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .output import Output


def masked(data: object, clean: Callable[[str], str]) -> object:
    """``data`` with ``clean`` (`Output.clean`: secrets to ``***``) applied to every string in
    it, keys too, before it is serialized: in JSON text a secret holding a quote, a backslash,
    a control character or a non-ASCII letter is escaped, and a search for the value there
    would miss it."""
    if isinstance(data, str):
        return clean(data)
    if isinstance(data, dict):
        return {masked(key, clean): masked(value, clean) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [masked(item, clean) for item in data]
    return data


def write_json(path: str, data: object, clean: Callable[[str], str] = str) -> None:
    """Write ``data`` as JSON to ``path`` (replacing it whole: a reader never sees half),
    ``clean`` masking secrets in it (`masked`)."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    partial.write_text(json.dumps(masked(data, clean), indent=2) + "\n", encoding="utf-8")
    partial.replace(target)


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


#: The help text of every ``--json`` option.
JSON_HELP = "print one JSON document (a list with an object per host) and nothing else on stdout"


def print_json(data: object, clean: Callable[[str], str] = str) -> None:
    """Write ``data`` to stdout as one JSON document, ``clean`` masking secrets in it
    (`masked`)."""
    sys.stdout.write(json.dumps(masked(data, clean), indent=2) + "\n")
    sys.stdout.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: str = "") -> str:
    """Plain aligned text: a header line, then one line per row; columns two spaces apart.

    ``right`` names the headers whose column is right-aligned (numbers). Cells are turned
    into one-line strings; trailing blanks are dropped.
    """
    cells = [[str(h) for h in headers]]
    for row in rows:
        line = [" ".join(str(v).split()) if v is not None else "" for v in row]
        cells.append(line + [""] * (len(headers) - len(line)))
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = [h in right.split(",") if right else False for h in headers]
    out = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if align[i] else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)


class Reportable(Protocol):
    """An item a task prints as a table row or as one object of its JSON document."""

    def to_json(self) -> dict[str, object]: ...


def show(output: Output, items: Sequence[Reportable], text: str | None) -> None:
    """Print ``text`` (the table), or with None the items as one JSON document on stdout."""
    if text is None:
        print_json([item.to_json() for item in items], output.clean)
    else:
        output.say(text)
