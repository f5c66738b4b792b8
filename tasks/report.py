"""What a command prints at its end: aligned plain-text tables, or one JSON document."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

#: The help text of every ``--json`` option.
JSON_HELP = "print one JSON document (a list with an object per host) and nothing else on stdout"


def print_json(data: object, clean: Callable[[str], str] = str) -> None:
    """Write ``data`` to stdout as one JSON document (``clean`` masks secrets in it)."""
    sys.stdout.write(clean(json.dumps(data, indent=2)) + "\n")
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
