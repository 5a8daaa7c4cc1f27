"""The nightly window (local time, across midnight, under several TZ) and the gate's pausing decisions."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from transcoding_support import QUIET_CPU, ROOMY_DISK, transcoding_config

from exporter.metrics import TRANSCODE_STATES
from recorder.transcoding.gate import GB, CpuReading, DiskReading, Gate, TranscodeState, in_window, psutil_cpu

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Pacific/Chatham", "Asia/Kolkata", "Australia/Lord_Howe")


@pytest.fixture(params=ZONES)
def zone(request: pytest.FixtureRequest) -> Iterator[ZoneInfo]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield ZoneInfo(request.param)
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def at(zone: ZoneInfo, hour: int, minute: int = 0) -> float:
    """Unix time of hour:minute local time in `zone`, on an ordinary day (no DST change)."""
    return datetime(2026, 3, 10, hour, minute, tzinfo=zone).timestamp()


@pytest.mark.parametrize(
    ("hour", "minute", "inside"),
    [(21, 59, False), (22, 0, True), (23, 59, True), (0, 0, True), (3, 30, True), (5, 59, True), (6, 0, False),
     (12, 0, False)],
)  # fmt: skip
def test_window_crossing_midnight_in_local_time(zone: ZoneInfo, hour: int, minute: int, inside: bool) -> None:
    assert in_window(at(zone, hour, minute), "22:00", "06:00") is inside


@pytest.mark.parametrize(("hour", "inside"), [(1, False), (2, True), (5, True), (6, False), (23, False)])
def test_window_within_one_night(zone: ZoneInfo, hour: int, inside: bool) -> None:
    assert in_window(at(zone, hour), "02:00", "06:00") is inside


def test_window_follows_the_local_clock_not_utc(zone: ZoneInfo) -> None:
    # 02:30 local is inside 02:00-06:00 whatever UTC says; 02:30 UTC is inside only where local = UTC.
    assert in_window(at(zone, 2, 30), "02:00", "06:00")
    utc_0230 = datetime(2026, 3, 10, 2, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    local = datetime.fromtimestamp(utc_0230, zone)
    assert in_window(utc_0230, "02:00", "06:00") is (2 <= local.hour < 6)


class Readings:
    """Mutable readings the gate reads, and a fake clock."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.cpu = QUIET_CPU
        self.disk: DiskReading | None = ROOMY_DISK
        self.cameras = {"cam1": True, "cam2": True}


def gate_for(tmp_path: Path, readings: Readings, **transcoding: object) -> Gate:
    config = transcoding_config(
        tmp_path, run_schedule_start="23:00", run_schedule_end="05:00", max_cpu_percent=50, max_io_wait=20,
        min_free_space_gb=50, **transcoding,
    )  # fmt: skip
    return Gate(
        config.transcoding,
        cpu=lambda: readings.cpu,
        disk=lambda: readings.disk,
        cameras_recording=lambda: readings.cameras,
        clock=lambda: readings.now,
    )


def test_running_to_paused_outside_window_when_the_window_closes(tmp_path: Path, zone: ZoneInfo) -> None:
    r = Readings(at(zone, 23, 30))
    gate = gate_for(tmp_path, r)
    assert gate.decide() is TranscodeState.RUNNING
    r.now = at(zone, 5, 0)
    assert gate.decide() is TranscodeState.PAUSED_OUTSIDE_WINDOW


def test_running_to_paused_cpu_when_system_cpu_exceeds_max(tmp_path: Path, utc: None) -> None:
    r = Readings(at(ZoneInfo("UTC"), 0, 0))
    gate = gate_for(tmp_path, r)
    r.cpu = CpuReading(busy=50.0, iowait=0.0)
    assert gate.decide() is TranscodeState.RUNNING  # at the limit, not above it
    r.cpu = CpuReading(busy=50.1, iowait=0.0)
    assert gate.decide() is TranscodeState.PAUSED_CPU
    r.cpu = CpuReading(busy=10.0, iowait=0.0)
    assert gate.decide() is TranscodeState.RUNNING


def test_running_to_paused_io_wait_when_iowait_exceeds_max(tmp_path: Path, utc: None) -> None:
    r = Readings(at(ZoneInfo("UTC"), 1, 0))
    gate = gate_for(tmp_path, r)
    r.cpu = CpuReading(busy=5.0, iowait=35.0)
    assert gate.decide() is TranscodeState.PAUSED_IO_WAIT


def test_running_to_paused_camera_not_recording_when_any_camera_stops(tmp_path: Path, utc: None) -> None:
    r = Readings(at(ZoneInfo("UTC"), 1, 0))
    gate = gate_for(tmp_path, r)
    r.cameras = {"cam1": True, "cam2": False}
    assert gate.decide() is TranscodeState.PAUSED_CAMERA_NOT_RECORDING
    r.cameras = {"cam1": True, "cam2": True}
    assert gate.decide() is TranscodeState.RUNNING


def test_low_space_needs_both_the_warning_level_and_too_little_free(tmp_path: Path, utc: None) -> None:
    r = Readings(at(ZoneInfo("UTC"), 1, 0))
    gate = gate_for(tmp_path, r)
    # Above the warning with plenty free (a big disk kept at its threshold by retention): runs.
    r.disk = DiskReading(used_ratio=0.88, avail_bytes=120 * GB, low_space_warning_ratio=0.8)
    assert gate.decide() is TranscodeState.RUNNING
    # Little free on a disk below the warning (a small disk, mostly empty): runs.
    r.disk = DiskReading(used_ratio=0.5, avail_bytes=10 * GB, low_space_warning_ratio=0.8)
    assert gate.decide() is TranscodeState.RUNNING
    # Both: pauses.
    r.disk = DiskReading(used_ratio=0.85, avail_bytes=10 * GB, low_space_warning_ratio=0.8)
    assert gate.decide() is TranscodeState.PAUSED_LOW_SPACE
    # Unknown (the filesystem cannot be read): pauses rather than guess.
    r.disk = None
    assert gate.decide() is TranscodeState.PAUSED_LOW_SPACE


def test_reasons_are_checked_in_a_fixed_order(tmp_path: Path, utc: None) -> None:
    r = Readings(at(ZoneInfo("UTC"), 12, 0))
    r.cpu = CpuReading(busy=99.0, iowait=99.0)
    r.cameras = {"cam1": False}
    gate = gate_for(tmp_path, r)
    assert gate.decide() is TranscodeState.PAUSED_OUTSIDE_WINDOW
    r.now = at(ZoneInfo("UTC"), 1, 0)
    assert gate.decide() is TranscodeState.PAUSED_CAMERA_NOT_RECORDING
    r.cameras = {"cam1": True}
    assert gate.decide() is TranscodeState.PAUSED_CPU


def test_room_for_the_temporary_file(tmp_path: Path) -> None:
    r = Readings(0.0)
    gate = gate_for(tmp_path, r)
    r.disk = DiskReading(used_ratio=0.5, avail_bytes=1000, low_space_warning_ratio=0.8)
    assert gate.room_for(999)
    assert not gate.room_for(1000)


def test_psutil_reading_is_a_percentage_without_niced_time() -> None:
    psutil_cpu()
    reading = psutil_cpu()
    assert 0.0 <= reading.busy <= 100.0
    assert 0.0 <= reading.iowait <= 100.0


def test_states_are_the_metric_label_values() -> None:
    assert tuple(s.value for s in TranscodeState) == TRANSCODE_STATES
