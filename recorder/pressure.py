"""Disk pressure as pure arithmetic: how much to free now, and when to look again.

No filesystem access here, so every rule can be unit-tested with numbers. The rules:

- Above `threshold` (a used ratio), free down to `target`.
- `min_free_minutes` wishes for that many minutes of writing to stay free at the current write rate. It
  may make retention act *before* the threshold is reached, but it never deletes below `target`: a wish
  larger than the space between the target and a full disk is capped there, and reported as unmet
  (footage is worth more than the wish).
- The next check is scheduled from the time until the threshold is reached at the current write rate,
  so a disk that fills at full speed is looked at well before it is full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Look again after this share of the time the disk needs to reach the threshold at the current rate.
TIME_TO_FULL_SHARE = 0.25
# Never check more often than this: statvfs is cheap, a wake-up of the storage thread is not free.
MIN_CHECK_DELAY = 0.2


@dataclass(frozen=True)
class PressureNeed:
    """What the disk_pressure policy must do now."""

    bytes_to_free: int  # 0: nothing to delete
    min_free_unmet: bool  # min_free_minutes wants more than retention may free without going below target


def bytes_above(size: int, used: int, ratio: float, *, strict: bool) -> int:
    """Bytes to free so that `used / size` is at most `ratio` (below it when `strict`)."""
    excess = used - ratio * size
    if strict:
        return math.floor(excess) + 1 if excess >= 0 else 0
    return math.ceil(excess) if excess > 0 else 0


def pressure_need(
    *,
    size: int,
    avail: int,
    rate: float,
    threshold: float,
    target: float,
    min_free_minutes: float,
) -> PressureNeed:
    """Bytes to delete now on a filesystem of `size` bytes with `avail` free, written at `rate` B/s."""
    if size <= 0:
        return PressureNeed(0, False)
    used = size - avail
    # Everything retention may ever free without deleting below the target.
    above_target = bytes_above(size, used, target, strict=False)
    need = above_target if used / size > threshold else 0
    unmet = False
    if rate > 0 and min_free_minutes > 0:
        wanted_avail = min_free_minutes * 60.0 * rate
        # The most avail can be made by deleting down to the target; a wish beyond that is unmet.
        unmet = wanted_avail > size - target * size
        if avail < wanted_avail:
            need = max(need, min(math.ceil(wanted_avail - avail), above_target))
    return PressureNeed(need, unmet)


def next_check_delay(
    *,
    size: int,
    avail: int,
    rate: float,
    threshold: float,
    check_interval: float,
) -> float:
    """Seconds until the pressure check should look again: `check_interval`, or sooner when filling fast."""
    if size <= 0 or rate <= 0:
        return check_interval
    headroom = threshold * size - (size - avail)  # bytes until the threshold is reached
    if headroom <= 0:
        return MIN_CHECK_DELAY
    return max(MIN_CHECK_DELAY, min(check_interval, TIME_TO_FULL_SHARE * headroom / rate))
