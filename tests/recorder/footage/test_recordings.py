"""What was recorded when: stretches and gaps from the index, restarts in range, times as users type them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import small_config

from recorder.domain.vocabulary import CameraState
from recorder.footage.recordings import (
    GAP_TOLERANCE_SECONDS,
    TimeError,
    build_timeline,
    day_bounds,
    parse_time,
    scan_folder,
    segments_from_index,
    spans_of_rows,
)
from recorder.footage.segments import CompletedSegment
from recorder.state.snapshots import RECENT_RESTARTS_KEPT, CameraSnapshot, recent_restarts
from recorder.storage.facade import Storage

T0 = 1_795_600_000.0  # 2026-11-25 07:06:40 UTC


@pytest.fixture(params=["UTC0", "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata"])
def any_tz(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_consecutive_segments_make_one_stretch_and_holes_make_gaps() -> None:
    spans = [(T0, T0 + 10, 5), (T0 + 10, T0 + 20, 5), (T0 + 21, T0 + 30, 5), (T0 + 60, T0 + 70, 5)]
    timeline = build_timeline("cam1", spans, T0 - 30, T0 + 100, oldest=T0 - 1000)
    assert [(s.start, s.end, s.segments, s.bytes) for s in timeline.stretches] == [
        (T0, T0 + 30, 3, 15),
        (T0 + 60, T0 + 70, 1, 5),
    ]
    assert [(g.start, g.end) for g in timeline.gaps] == [(T0 - 30, T0), (T0 + 30, T0 + 60), (T0 + 70, T0 + 100)]
    assert timeline.recorded_seconds == 40


def test_a_segment_running_into_the_range_is_clipped_to_it() -> None:
    timeline = build_timeline("cam1", [(T0 - 50, T0 + 10, 1)], T0, T0 + 10)
    assert [(s.start, s.end) for s in timeline.stretches] == [(T0, T0 + 10)]
    assert timeline.gaps == ()


def test_the_future_is_no_gap() -> None:
    timeline = build_timeline(
        "cam1", [(T0, T0 + 10, 1)], T0, T0 + 86400, now=T0 + 10 + GAP_TOLERANCE_SECONDS / 2, oldest=T0
    )
    assert timeline.gaps == ()


def test_before_the_oldest_kept_segment_is_no_gap() -> None:
    spans = [(T0, T0 + 10, 1)]
    assert build_timeline("cam1", spans, T0 - 100, T0 + 10, oldest=T0).gaps == ()
    half = build_timeline("cam1", spans, T0 - 100, T0 + 10, oldest=T0 - 50)
    assert [(g.start, g.end) for g in half.gaps] == [(T0 - 50, T0)]
    # A camera with nothing kept at all has no gaps, only nothing to show.
    assert build_timeline("cam1", [], T0 - 100, T0 + 10, oldest=None).gaps == ()


def test_restarts_in_range_are_kept_with_their_reason() -> None:
    first = CameraSnapshot("cam1", CameraState.RECORDING, True, 0.0)
    events = recent_restarts(first, {"stalled": 1}, T0 + 5, "no progress")
    later = CameraSnapshot("cam1", CameraState.BACKOFF, True, 0.0, restarts={"stalled": 1}, recent_restarts=events)
    events = recent_restarts(later, {"stalled": 1, "crashed": 2}, T0 + 500, "Segmentation fault")
    assert [(e.at, e.reason, e.error) for e in events] == [
        (T0 + 5, "stalled", "no progress"),
        (T0 + 500, "crashed", "Segmentation fault"),
        (T0 + 500, "crashed", "Segmentation fault"),
    ]
    timeline = build_timeline("cam1", [], T0, T0 + 100, events)
    assert [e.reason for e in timeline.restarts] == ["stalled"]


def test_the_restart_ring_is_bounded_and_unchanged_without_new_restarts() -> None:
    snap = CameraSnapshot("cam1", CameraState.RECORDING, True, 0.0)
    events = recent_restarts(snap, {"crashed": RECENT_RESTARTS_KEPT + 5}, T0, None)
    assert len(events) == RECENT_RESTARTS_KEPT
    again = CameraSnapshot("cam1", CameraState.RECORDING, True, 0.0, restarts={"crashed": 1}, recent_restarts=events)
    assert recent_restarts(again, {"crashed": 1}, T0 + 1, None) is events


def test_unknown_durations_are_bounded_by_the_next_segment_and_the_segment_time() -> None:
    rows = [(T0, "a", 1, 0.0), (T0 + 30, "b", 1, 0.0), (T0 + 500, "c", 1, 0.0), (T0 + 560, "d", 1, 12.5)]
    assert list(spans_of_rows(rows, 60.0)) == [
        (T0, T0 + 30, 1),  # bounded by the next start
        (T0 + 30, T0 + 90, 1),  # an outage follows: one segment time
        (T0 + 500, T0 + 560, 1),
        (T0 + 560, T0 + 572.5, 1),  # known duration wins
    ]
    segments = segments_from_index(rows, "cam1", Path("/rec/cam1"), 60.0)
    assert [s.duration_known for s in segments] == [False, False, False, True]
    assert segments[0].path == Path("/rec/cam1/a")


def test_storage_segments_between_reads_the_index_not_the_disk(tmp_path: Path) -> None:
    config = small_config(tmp_path, recording={"segment_time": 10})
    storage = Storage(config)
    for i in range(10):
        start = T0 + i * 10
        name = f"cam1_{datetime.fromtimestamp(start, timezone.utc):%Y%m%d_%H%M%S}.mkv"
        # No file is written: the index alone answers.
        assert storage.add_segment(CompletedSegment("cam1", tmp_path / "cam1" / name, start, 10.0, 100 + i))
    rows = storage.segments_between("cam1", T0 + 25, T0 + 45)
    # The one that started before the range runs into it, then those starting inside it.
    assert [r[0] for r in rows] == [T0 + 20, T0 + 30, T0 + 40]
    assert rows[0][2:] == (102, 10.0)
    assert storage.segments_between("nope", T0, T0 + 100) == []
    assert storage.segments_between("cam1", T0 - 100, T0 - 50) == []


def test_scan_folder_lists_one_camera(tmp_path: Path) -> None:
    folder = tmp_path / "cam1"
    folder.mkdir()
    for name in ("cam1_20261125_140000.mkv", "cam1_20261125_140010.mkv", "cam2_20261125_140000.mkv", "x.txt"):
        (folder / name).write_bytes(b"12")
    segments = scan_folder(folder, "cam1", 10.0)
    assert [s.path.name for s in segments] == ["cam1_20261125_140000.mkv", "cam1_20261125_140010.mkv"]
    assert scan_folder(tmp_path / "missing", "cam1", 10.0) == []


def test_times_with_a_zone_mean_the_same_instant_under_any_tz(any_tz: str) -> None:
    expected = datetime(2026, 11, 25, 14, 3, tzinfo=timezone.utc).timestamp()
    assert parse_time("2026-11-25 14:03Z", 0) == (expected, "UTC")
    assert parse_time("2026-11-25T14:03:00 UTC", 0) == (expected, "UTC")
    assert parse_time("2026-11-25 15:03+01:00", 0) == (expected, "UTC+01:00")
    assert parse_time(str(int(expected)), 0) == (expected, "UTC (Unix time)")
    assert parse_time("now", expected) == (expected, "now")
    assert parse_time("-10min", expected)[0] == expected - 600
    assert parse_time("-2h", expected)[0] == expected - 7200


def test_a_time_without_zone_is_local_time_and_says_so(any_tz: str) -> None:
    value, zone = parse_time("2026-11-25 14:03", 0)
    local = datetime(2026, 11, 25, 14, 3).astimezone()
    assert value == local.timestamp()
    assert zone.startswith("local time (") and local.strftime("%Z") in zone
    if any_tz == "Europe/Berlin":
        assert zone == "local time (CET, UTC+01:00)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Fractional seconds of any length: Python 3.10's fromisoformat took only 3 or 6 digits.
        ("2026-11-25T14:03:05.5Z", datetime(2026, 11, 25, 14, 3, 5, 500000, tzinfo=timezone.utc)),
        ("2026-11-25 14:03:05.12Z", datetime(2026, 11, 25, 14, 3, 5, 120000, tzinfo=timezone.utc)),
        ("2026-11-25 14:03:05.1234567 UTC", datetime(2026, 11, 25, 14, 3, 5, 123456, tzinfo=timezone.utc)),
        ("2026-11-25T15:03:05.1+01:00", datetime(2026, 11, 25, 14, 3, 5, 100000, tzinfo=timezone.utc)),
        # Offsets without a colon or without minutes, and a lower-case z (3.11 takes them, 3.10 did not).
        ("2026-11-25 15:33+0130", datetime(2026, 11, 25, 14, 3, tzinfo=timezone.utc)),
        ("2026-11-25 09:03-05", datetime(2026, 11, 25, 14, 3, tzinfo=timezone.utc)),
        ("2026-11-25t14:03z", datetime(2026, 11, 25, 14, 3, tzinfo=timezone.utc)),
        ("2026-11-25Z", datetime(2026, 11, 25, tzinfo=timezone.utc)),
    ],
)
def test_times_read_the_same_under_python_310_and_later(any_tz: str, text: str, expected: datetime) -> None:
    value, zone = parse_time(text, 0)
    assert value == expected.timestamp()
    assert zone.startswith("UTC")


@pytest.mark.parametrize(
    "text",
    [
        "yesterday-ish",
        "2026-13-01 10:00",
        "14:03",
        "2026-11-25 14:03+01:00Z",
        "2026-11-25 24:00",
        "2026-11-25 14:03:05.",
        "2026-11-25 14:03+24:00",
        "2026-11-2514:03",
        "2026-11-25 14:3",
    ],
)
def test_unreadable_times_say_what_is_accepted(text: str) -> None:
    with pytest.raises(TimeError):
        parse_time(text, 0)


def test_day_bounds_are_local_midnights_even_on_a_daylight_saving_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        start, end = day_bounds("2026-10-25")  # clocks go back an hour: a 25-hour day
        assert end - start == 25 * 3600
        assert datetime.fromtimestamp(start).strftime("%Y-%m-%d %H:%M") == "2026-10-25 00:00"
        start, end = day_bounds("2026-11-25")
        assert end - start == 24 * 3600
        with pytest.raises(TimeError):
            day_bounds("25.11.2026")
    finally:
        monkeypatch.undo()
        time.tzset()
