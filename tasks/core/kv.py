"""``key=value`` text, the one rule for reading it: what the remote scripts print, REVISION
files, the audit log's tab-separated lines, the lock file.

An item is ``key=value``: the key a name (letters, digits, ``_``), the value everything after
the first ``=`` with surrounding white space removed. Other items are ignored; a later key
wins.
"""

from __future__ import annotations

import re

#: A key: what `parse` keeps.
KEY = re.compile(r"[A-Za-z0-9_]+")


def parse(text: str, separator: str | None = None) -> dict[str, str]:
    """The ``key=value`` items of ``text``: its lines, or its ``separator``-separated parts."""
    pairs: dict[str, str] = {}
    for item in text.splitlines() if separator is None else text.split(separator):
        key, sep, value = item.strip().partition("=")
        if sep and KEY.fullmatch(key):
            pairs[key] = value.strip()
    return pairs
