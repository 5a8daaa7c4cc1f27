"""The nightly window `run_schedule_start`-`run_schedule_end` in local time; it may cross midnight."""

from __future__ import annotations

import time
from datetime import datetime


def minutes_of(hhmm: str) -> int:
    """Minutes since midnight of a validated `HH:MM`."""
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def in_window(now: float, start: str, end: str, *, localtime: type[datetime] = datetime) -> bool:
    """Whether Unix time `now` falls in [start, end) local time; an end before the start crosses midnight.

    Local time is the process's TZ at the moment asked, so a daylight-saving change moves the window
    with the wall clock, as an operator reading "02:00" expects.
    """
    time.tzset()
    local = localtime.fromtimestamp(now)
    minute = local.hour * 60 + local.minute
    opens, closes = minutes_of(start), minutes_of(end)
    if opens < closes:
        return opens <= minute < closes
    return minute >= opens or minute < closes
