"""What was recorded when: segments of a time range, merged into stretches and gaps, and the times users type.

Read from the storage's in-memory index (the daemon) or from one listing of a camera folder (the CLI); never a
walk of the whole disk. A segment's duration is what FFmpeg reported; for one found by a scan (duration
unknown) the next segment's start bounds it, and a lone one is taken to last one segment time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from recorder.footage.segments import parse_segment_name
from recorder.state.snapshots import RestartEvent

# Segment names carry whole seconds and FFmpeg cuts at keyframes, so consecutive segments of one run meet
# within a second or two of each other; a larger hole is a gap in the recording.
GAP_TOLERANCE_SECONDS = 2.0
# Not datetime.UTC: that needs Python 3.11.
UTC_ZONE = timezone.utc


@dataclass(frozen=True)
class Segment:
    """One recorded segment file."""

    camera: str
    start: float  # Unix time of its first frame (from its name)
    duration: float  # seconds, known or estimated (see `duration_known`)
    size: int  # bytes
    path: Path
    duration_known: bool = True

    @property
    def end(self) -> float:
        return self.start + self.duration

    def as_json(self) -> dict[str, object]:
        return {
            "start": self.start,
            "start_iso": iso_utc(self.start),
            "duration": round(self.duration, 3),
            "duration_known": self.duration_known,
            "size": self.size,
            "path": str(self.path),
        }


@dataclass(frozen=True)
class Stretch:
    """Recorded without a gap from `start` to `end`."""

    start: float
    end: float
    segments: int
    bytes: int


@dataclass(frozen=True)
class Gap:
    """Nothing recorded from `start` to `end`."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Timeline:
    """One camera over [start, end): what was recorded, what was not, and the restarts in between."""

    camera: str
    start: float
    end: float
    stretches: tuple[Stretch, ...]
    gaps: tuple[Gap, ...]
    restarts: tuple[RestartEvent, ...]

    @property
    def recorded_seconds(self) -> float:
        return sum(s.end - s.start for s in self.stretches)


def segments_from_index(
    rows: Iterable[tuple[float, str, int, float]], camera: str, folder: Path, segment_time: float
) -> list[Segment]:
    """Segments of the index rows (start, name, size, duration; oldest first), unknown durations estimated."""
    rows = list(rows)
    return [
        Segment(camera, start, end - start, size, folder / row[1], row[3] > 0)
        for row, (start, end, size) in zip(rows, spans_of_rows(rows, segment_time), strict=True)
    ]


def scan_folder(folder: Path, camera: str, segment_time: float) -> list[Segment]:
    """One listing of a camera folder as segments (the CLI, with no daemon's index at hand)."""
    rows = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                parsed = parse_segment_name(entry.name)
                if parsed is None or parsed.camera != camera or not entry.is_file(follow_symlinks=False):
                    continue
                rows.append((parsed.start, entry.name, entry.stat(follow_symlinks=False).st_size, 0.0))
    except FileNotFoundError:
        return []
    rows.sort()
    return segments_from_index(rows, camera, folder, segment_time)


def overlapping(segments: Sequence[Segment], start: float, end: float) -> list[Segment]:
    return [s for s in segments if s.end > start and s.start < end]


def spans_of_rows(
    rows: Sequence[tuple[float, str, int, float]], segment_time: float
) -> Iterator[tuple[float, float, int]]:
    """(start, end, size) of index rows, without building a Segment per row (the page reads thousands)."""
    n = len(rows)
    for i, (start, _name, size, duration) in enumerate(rows):
        if duration <= 0:
            following = rows[i + 1][0] - start if i + 1 < n else segment_time
            duration = min(following, segment_time) if following > 0 else segment_time
        yield start, start + duration, size


def build_timeline(
    camera: str,
    spans: Iterable[tuple[float, float, int]],
    start: float,
    end: float,
    restarts: Iterable[RestartEvent] = (),
    *,
    now: float | None = None,
    oldest: float | None = None,
) -> Timeline:
    """Stretches and gaps of [start, end) from (start, end, size) spans sorted by start.

    Neither the future (after `now`) nor the time before the camera's oldest kept segment (`oldest`, None when
    it has none) is a gap: nothing was missed there that the recorder could have kept.
    """
    horizon = end if now is None else min(end, now)
    stretches: list[Stretch] = []
    cur_start = cur_end = 0.0
    count = size = 0
    for seg_start, seg_end, seg_size in spans:
        if seg_end <= start or seg_start >= end:
            continue
        seg_start, seg_end = max(seg_start, start), min(seg_end, end)
        if count and seg_start <= cur_end + GAP_TOLERANCE_SECONDS:
            cur_end = max(cur_end, seg_end)
            count += 1
            size += seg_size
            continue
        if count:
            stretches.append(Stretch(cur_start, cur_end, count, size))
        cur_start, cur_end, count, size = seg_start, seg_end, 1, seg_size
    if count:
        stretches.append(Stretch(cur_start, cur_end, count, size))
    gaps: list[Gap] = []
    cursor = max(start, oldest) if oldest is not None else horizon
    for stretch in stretches:
        if stretch.start - cursor > GAP_TOLERANCE_SECONDS:
            gaps.append(Gap(cursor, stretch.start))
        cursor = max(cursor, stretch.end)
    if horizon - cursor > GAP_TOLERANCE_SECONDS:
        gaps.append(Gap(cursor, horizon))
    events = tuple(e for e in restarts if start <= e.at < end)
    return Timeline(camera, start, end, tuple(stretches), tuple(gaps), events)


# -- times as users type them -----------------------------------------------------------------------

_RELATIVE_RE = re.compile(r"^-\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h|d)$")
_UNIT_SECONDS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


# A date and time as users type them, read by this pattern rather than datetime.fromisoformat, whose Python
# 3.10 refuses fractional seconds other than 3 or 6 digits (and forms 3.11 takes): the same text must mean
# the same on both. A `T` or a space between date and time; any number of fractional digits; then
# `Z`, `UTC` (a space before it allowed) or an offset `+01:00`, `+0100`, `+01`; both a UTC and an offset is
# refused below.
_TIME_RE = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?)?"
    r"(?P<offset>(?P<sign>[+-])(?P<offset_hours>\d{2})(?::?(?P<offset_minutes>\d{2}))?)?"
    r"(?:\s*(?P<utc>Z|UTC))?",
    re.ASCII | re.IGNORECASE,
)


def _datetime_of(match: re.Match[str]) -> datetime:
    """The datetime a _TIME_RE match names (naive without an offset); ValueError for an impossible one."""
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")  # beyond microseconds is below our precision
    zone = None
    if match["offset"]:
        minutes = int(match["offset_hours"]) * 60 + int(match["offset_minutes"] or 0)
        if minutes >= 24 * 60:
            raise ValueError(match["offset"])
        zone = timezone(timedelta(minutes=-minutes if match["sign"] == "-" else minutes))
    return datetime(
        int(match["year"]),
        int(match["month"]),
        int(match["day"]),
        int(match["hour"] or 0),
        int(match["minute"] or 0),
        int(match["second"] or 0),
        int(fraction),
        tzinfo=zone,
    )


class TimeError(ValueError):
    """A time the user gave could not be read; the message says what is accepted."""


def parse_time(text: str, now: float) -> tuple[float, str]:
    """A Unix time from what a user typed, and in which zone it was read ("UTC", "local time (CET)", ...).

    Accepted: `2026-11-25 14:03[:SS]` (local time of this machine), the same with `Z`, `UTC` or an offset
    such as `+01:00`, a `T` between date and time, a Unix timestamp, `now`, and `-5min`, `-2h`, `-1d`.
    """
    value = text.strip()
    if value == "now":
        return now, "now"
    relative = _RELATIVE_RE.match(value)
    if relative:
        return now - float(relative[1]) * _UNIT_SECONDS[relative[2]], "relative to now"
    if re.fullmatch(r"\d{9,11}(\.\d+)?", value):
        return float(value), "UTC (Unix time)"
    unreadable = TimeError(
        f"cannot read {text!r} as a time: use 'YYYY-MM-DD HH:MM[:SS]' (local time), with 'Z', 'UTC' or "
        "an offset such as '+01:00', a Unix timestamp, 'now', or '-10min', '-2h'"
    )
    match = _TIME_RE.fullmatch(value)
    if match is None:
        raise unreadable
    try:
        parsed = _datetime_of(match)
    except ValueError:
        raise unreadable from None
    utc = match["utc"] is not None
    if utc:
        if parsed.tzinfo is not None:
            raise TimeError(f"{text!r}: give either UTC or an offset, not both")
        return parsed.replace(tzinfo=UTC_ZONE).timestamp(), "UTC"
    if parsed.tzinfo is not None:
        offset = parsed.utcoffset() or timedelta(0)
        return parsed.timestamp(), "UTC" if offset == timedelta(0) else f"UTC{_offset(offset)}"
    local = parsed.astimezone()  # a naive time is this machine's local time
    return local.timestamp(), f"local time ({local.tzname()}, UTC{_offset(local.utcoffset() or timedelta(0))})"


def _offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def day_bounds(day: str) -> tuple[float, float]:
    """Local midnight to the next local midnight of `YYYY-MM-DD` (23 or 25 hours on daylight saving days)."""
    try:
        first = date.fromisoformat(day)
    except ValueError:
        raise TimeError(f"day: expected YYYY-MM-DD, got {day!r}") from None
    start = datetime(first.year, first.month, first.day).astimezone()
    following = first + timedelta(days=1)
    end = datetime(following.year, following.month, following.day).astimezone()
    return start.timestamp(), end.timestamp()


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC_ZONE).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_text(ts: float, fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    return datetime.fromtimestamp(ts).astimezone().strftime(fmt)
