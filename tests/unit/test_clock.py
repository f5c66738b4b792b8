"""The timestamp formats: each defined once in tasks/core/clock.py; the host scripts write
epoch seconds only."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from tasks.core import clock
from tasks.core.records import Audit

TASKS = Path(clock.__file__).resolve().parents[1]

#: A time format given to Python (strftime, strptime) or to a script's ``date +...`` or
#: bash's ``printf '%(...)T'``.
PY_FORMAT = re.compile(r"\b(?:strftime|strptime|isoformat|fromisoformat)\b|%Y|%H")
DATE_FORMAT = re.compile(r"\bdate\b[^|;\n]*?\+['\"]?([^'\")\s]+)|%\(([^)]*)\)T")


def test_the_formats() -> None:
    moment = dt.datetime(2026, 11, 24, 8, 15, 0, 123456, tzinfo=dt.timezone.utc)
    assert clock.release_name(moment) == "20261124T081500.123Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", clock.utc_now())
    assert clock.human_utc(moment.timestamp()) == "2026-11-24 08:15:00 UTC"
    assert Audit.parse(Audit(clock.utc_now(), "deploy", "r", "v", "u", "ok").format())


def test_no_time_format_outside_clock() -> None:
    """Every module asks core/clock.py; none spells a time format itself."""
    found = [
        f"{path.relative_to(TASKS)}: {line.strip()}"
        for path in sorted(TASKS.rglob("*.py"))
        if path != Path(clock.__file__).resolve()
        for line in path.read_text().splitlines()
        if PY_FORMAT.search(line)
    ]
    assert found == []


def test_the_scripts_write_epoch_seconds_only() -> None:
    """What a host script writes for Python to read (the lock's since and now) or hands to
    journalctl is epoch seconds, in no format of its own."""
    formats = {}
    for script in sorted((TASKS / "scripts").glob("*.sh")):
        for line in script.read_text().splitlines():
            if line.lstrip().startswith("#"):
                continue
            for match in DATE_FORMAT.finditer(line):
                formats[f"{script.name}: {line.strip()}"] = match.group(1) or match.group(2)
    assert len(formats) >= 4  # lock.sh twice, lock-status.sh, unlock.sh, restart_processes.sh
    assert set(formats.values()) == {clock.SCRIPT_FORMAT}, formats
