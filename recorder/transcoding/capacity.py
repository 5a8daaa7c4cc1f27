"""Retention capacity when segments older than min_age_days shrink by the transcoding ratio."""

from __future__ import annotations

DAY = 86400.0


def transcoded_capacity_seconds(usable_bytes: float, rate: float, min_age_days: float, size_ratio: float) -> float:
    """Seconds of recording that fit in `usable_bytes` at `rate` bytes/s when footage past min_age shrinks.

    The newest `min_age_days` are kept as recorded (`rate` bytes per second); everything older takes
    `size_ratio` (transcoded bytes / original bytes, measured) of that. With capacity C:
    C <= min_age: C = usable / rate; else usable = min_age * rate + (C - min_age) * rate * ratio.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    usable = max(usable_bytes, 0.0)
    young = min_age_days * DAY
    if usable <= young * rate or size_ratio <= 0:
        return usable / rate
    return young + (usable - young * rate) / (rate * min(size_ratio, 1.0))
