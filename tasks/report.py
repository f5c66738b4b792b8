"""What a command prints at its end: aligned plain-text tables."""

from __future__ import annotations

from collections.abc import Sequence


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
