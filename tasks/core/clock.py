"""The one timestamp format: UTC, to the second, as a release name and in the logs."""

from __future__ import annotations

import datetime as dt
import time


def release_name(now: dt.datetime | None = None) -> str:
    """A new release's name: its UTC time, sortable, unique to the millisecond."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
