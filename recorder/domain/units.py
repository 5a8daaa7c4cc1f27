"""How sizes and durations are written for people: binary units everywhere (the status page, --stats,
--export, --transcode), 1 GiB = 1024 MiB = 1,073,741,824 bytes, as `df -h` and `du -h` print them."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """123 B, 4.5 KiB, 67.8 MiB, 9.1 GiB, 2.3 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_seconds(seconds: float) -> str:
    """42.0 s under a minute, then 12:34 or 1:02:03."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
