"""The app's secrets file on a host (``shared/.env``): its format, written and read here.

One ``KEY="value"`` line per secret, sorted by key. Inside the double quotes ``\\`` and ``"``
are escaped with a backslash; every other character (``$``, `````, ``'``, ``=``, unicode,
a newline: the value then spans lines) stands for itself. systemd's ``EnvironmentFile=``
reads it so, and so do the two readers on the host, which must agree with `parse`:
``templates/gunicorn.conf.py.in`` (``_read_env``, the app's environment under gunicorn) and
``scripts/with_secrets.py`` (hooks, ``fab exec``), self-contained since no fabdeploy is
installed there. No reader runs it through a shell. tests/unit/test_secretsfile.py
round-trips `render` through both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: One secret: the name, then the quoted value (escapes undone by `parse`).
LINE = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"$', re.MULTILINE | re.DOTALL)


def render(values: Mapping[str, str]) -> str:
    """The file's text for ``values``."""
    lines = []
    for key in sorted(values):
        value = values[key].replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{value}"\n')
    return "".join(lines)


def parse(text: str) -> dict[str, str]:
    """The secrets in a file `render` wrote."""
    return {
        m.group(1): re.sub(r"\\(.)", r"\1", m.group(2), flags=re.DOTALL)
        for m in LINE.finditer(text)
    }
