"""The timestamps fabdeploy writes, each format defined here once; always UTC.

- `release_name`: a release's name, and the start of a deploy's and a switch's id
  (``20261124T081500.123Z``): sorts by time, unique to the millisecond.
- `utc_now`: the time of a revisions.log line and of a REVISION file
  (``2026-11-24T08:15:00Z``, ISO 8601, `STAMP_FORMAT`).
- `human_utc`: a time (epoch seconds) in a message (``2026-11-24 08:15:00 UTC``).

The host scripts write the host's time as epoch seconds only (`SCRIPT_FORMAT`: ``printf
'%(%s)T' -1`` or ``date +%s``; the lock's ``since`` and ``now``, journalctl's ``--since
@<seconds>``), which Python reads as an int: tests/unit/test_clock.py keeps it so, and
keeps every other format in this module.
"""

from __future__ import annotations

import datetime as dt
import time

#: A release's name up to the second (`release_name` adds ``.<milliseconds>Z``).
RELEASE_FORMAT = "%Y%m%dT%H%M%S"

#: The time in revisions.log and REVISION files: ISO 8601, UTC, to the second.
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

#: A time shown to a person.
HUMAN_FORMAT = "%Y-%m-%d %H:%M:%S UTC"

#: The only time format the host scripts use (``date +%s``): epoch seconds.
SCRIPT_FORMAT = "%s"

#: How the scripts `stat` a root file (tasks/host/sudoers.py: one fixed sudo line): owner,
#: group, mode and its modification time in epoch seconds (``%Y``), colon-separated.
STAT_FORMAT = "%U:%G:%a:%Y"


def release_name(now: dt.datetime | None = None) -> str:
    """A new release's name: its UTC time, sortable, unique to the millisecond."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime(RELEASE_FORMAT) + f".{now.microsecond // 1000:03d}Z"


def utc_now() -> str:
    """The time now as revisions.log and REVISION files hold it (`STAMP_FORMAT`)."""
    return time.strftime(STAMP_FORMAT, time.gmtime())


def human_utc(epoch: float) -> str:
    """``epoch`` (seconds) for a message, in UTC (`HUMAN_FORMAT`)."""
    return time.strftime(HUMAN_FORMAT, time.gmtime(epoch))
