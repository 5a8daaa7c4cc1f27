"""A scrape's exact bytes: the recorder's families over a hand-made snapshot that uses every family, label
values that need escaping and values of every float shape, written by prometheus_client's text and
OpenMetrics encoders, against goldens (tests/golden/scrape.*) taken from the collector before its families
became rows; and a collector that keeps things between scrapes writes what a fresh one writes.

If a deliberate change (a new family, label value or vocabulary word) changes the bytes, rewrite the
goldens with `.venv/bin/python tests/exporter/test_scrape_golden.py` and say why in the commit.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from pathlib import Path
from types import MappingProxyType

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter import collector as collector_module
from exporter.collector import RecorderCollector
from exporter.server import negotiate
from recorder.config.model import CameraConfig
from recorder.domain.buildinfo import BuildInfo
from recorder.domain.vocabulary import CameraState, SourceKind, TranscodeState
from recorder.footage.segments import segment_duration_buckets
from recorder.state.snapshots import (
    CameraSnapshot,
    CameraStorage,
    CameraView,
    Histogram,
    RecorderSnapshot,
    ResourceUsage,
    StorageSnapshot,
    TranscodeSnapshot,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TEXT_GOLDEN = GOLDEN / "scrape.txt"
OPENMETRICS_GOLDEN = GOLDEN / "scrape.openmetrics.txt"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PATH = '/srv/rec "main"\\disk'  # the `path` label: a quote and a backslash to escape


class Source:
    def __init__(self, snapshot: RecorderSnapshot) -> None:
        self.value = snapshot

    def snapshot(self) -> RecorderSnapshot:
        return self.value


def _durations(*observed: float) -> Histogram:
    hist = Histogram.empty(segment_duration_buckets(2))
    for value in observed:
        hist = hist.observe(value)
    return hist


def _cameras(door_name: str) -> tuple[CameraView, ...]:
    door = CameraConfig("door", door_name, SourceKind.DEVICE, "/dev/video0", framerate=25)
    yard = CameraConfig("yard", "yard", SourceKind.TEST_PATTERN, "")
    recording = CameraSnapshot(
        camera="door", state=CameraState.RECORDING, present=True, taken_at=90.0, frames=123_456_789,
        dropped_frames=3, duplicated_frames=1, fps=24.97, speed=0.998, bitrate_bits_per_second=4_000_004.0,
        written_bytes=98_765_432_109, segments_completed=42, segment_durations=_durations(1.99, 2.0, 0.3, 7.5),
        last_progress_at=1_700_000_123.456, last_segment_at=1_700_000_100.0,
        restarts=MappingProxyType({"stall": 2, "crashed": 1}), discarded=MappingProxyType({"empty": 5}),
        gap_seconds=12.5,
    )  # fmt: skip
    backing_off = CameraSnapshot(
        camera="yard", state=CameraState.BACKOFF, present=False, taken_at=95.0, fps=float("nan"),
        speed=float("inf"), gap_seconds=1e-05, gap_growing=True,
    )  # fmt: skip
    return (
        CameraView(door, recording, ResourceUsage(cpu_seconds=1234.5678, rss_bytes=52_428_800), codec="libx264"),
        CameraView(yard, backing_off, ResourceUsage()),  # no codec in the snapshot: the collector's codec_of
    )


def _storage() -> StorageSnapshot:
    cameras = {
        "door": CameraStorage("door", 1200, 9_876_543_210, 1_699_000_000.0, 1_700_000_000.0, 550_000.0, 2_592_000.0),
        "yard": CameraStorage("yard", 0, 0, None, None, 0.0, None),
    }
    deleted = {(cam, reason): 0 for cam in cameras for reason in ("max_age", "disk_pressure", "alert")}
    return StorageSnapshot(
        path=PATH, cameras=cameras, filesystem_size_bytes=500_107_862_016, filesystem_avail_bytes=123_456_789_012,
        used_ratio=0.75, writable=True, checked_at=1_700_000_050.0, write_rate_bytes_per_second=550_000.0,
        capacity_seconds=654_321.125, recording_allowed=True, max_age_seconds=None, disk_usage_threshold_ratio=0.9,
        low_space_warning_ratio=0.8, pressure_target_ratio=0.85, min_free_unmet=True,
        deleted_files=MappingProxyType({**deleted, ("door", "max_age"): 17}),
        deleted_bytes=MappingProxyType({**deleted, ("door", "max_age"): 170_000_000_000}),
        runs=MappingProxyType({"schedule": 3, "disk_pressure": 1}), last_run_timestamp=1_700_000_000.25,
        orphans=MappingProxyType({
            "old-porch": CameraStorage("old-porch", 40, 321_000_000, 1_698_000_000.0, 1_698_100_000.0, 0.0, 2_592_000.0,
                                       configured=False),
        }),
        orphaned_deleted_files=MappingProxyType({"disk_pressure": 3}),
        orphaned_deleted_bytes=MappingProxyType({"disk_pressure": 24_000_000}),
    )  # fmt: skip


def _transcoding() -> TranscodeSnapshot:
    return TranscodeSnapshot(
        state=TranscodeState.PAUSED_CPU, cameras=("door", "yard"),
        segments=MappingProxyType({("door", "transcoded"): 7, ("yard", "failed"): 1}),
        input_bytes={"door": 7_000_000_000}, output_bytes={"door": 2_100_000_000}, seconds={"door": 3600.5},
        backlog_segments={"door": 12}, backlog_bytes={"door": 12_000_000_000}, last_success={"door": 1_699_999_000.0},
    )  # fmt: skip


def snapshot(door_name: str = 'Door "north"\\gate\nB') -> RecorderSnapshot:
    return RecorderSnapshot(
        version="1.2.3", ffmpeg_version="6.1.1", python_version="3.11.7", started_at=1_700_000_000.5,
        cameras=_cameras(door_name), storage=_storage(),
        hotplug_events=MappingProxyType({("add", True): 4, ("remove", False): 2}), hotplug_mode="udev",
        cpu_temperature_celsius=61.5, config_reload_successful=False, config_reload_success_at=1_700_000_000.5,
        segment_time=2, stall_timeout=3.5, transcoding=_transcoding(), monotonic_now=100.0,
    )  # fmt: skip


def registry(source: Source) -> CollectorRegistry:
    # A clock that advances 1/8 s per reading: the sub-collectors' durations are the same in every run.
    clock = itertools.count(0.0, 0.125).__next__
    reg = CollectorRegistry(auto_describe=False)
    results = {"accepted": 5, "unauthorized": 2}
    collector = RecorderCollector(
        source, codec_of={"yard": "copy"}, container="mkv", segment_time=2.0, stall_timeout=3.0,
        webhook_results=lambda: results, clock=clock,
    )  # fmt: skip
    reg.register(collector)
    return reg


def _fixed_build() -> BuildInfo:
    return BuildInfo("1.2.3", "abc123", "main", "2024-01-01")  # a checkout's revision changes with each commit


@pytest.fixture(autouse=True)
def fixed_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector_module, "build_info", _fixed_build)


def test_text_scrape_is_the_golden_byte_for_byte() -> None:
    assert generate_latest(registry(Source(snapshot()))) == TEXT_GOLDEN.read_bytes()


def test_openmetrics_scrape_is_the_golden_byte_for_byte() -> None:
    assert generate_openmetrics(registry(Source(snapshot()))) == OPENMETRICS_GOLDEN.read_bytes()


@pytest.mark.parametrize(
    ("accept", "golden"),
    [
        (PROMETHEUS_ACCEPT, OPENMETRICS_GOLDEN),
        ("application/openmetrics-text;version=1.0.0;escaping=underscores", OPENMETRICS_GOLDEN),
        ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8", OPENMETRICS_GOLDEN),
        ("text/plain;version=1.0.0;escaping=underscores", TEXT_GOLDEN),
        ("", TEXT_GOLDEN),
    ],
)
def test_the_servers_encoders_write_the_librarys_bytes(accept: str, golden: Path) -> None:
    encoder, _ = negotiate(accept)
    library_encoder, _ = choose_encoder(accept)
    assert encoder(registry(Source(snapshot()))) == library_encoder(registry(Source(snapshot()))) == golden.read_bytes()


def test_a_second_scrape_follows_a_renamed_camera() -> None:
    source = Source(snapshot())
    reg = registry(source)
    generate_latest(reg)  # fills what the collector keeps between scrapes
    source.value = snapshot(door_name="Front door")
    text = generate_latest(reg)
    assert b'name="Front door"' in text and b"north" not in text
    assert text == generate_latest(registry(Source(snapshot(door_name="Front door"))))


def test_a_second_scrape_follows_changed_values_down_to_the_sign_of_zero() -> None:
    first = dataclasses.replace(snapshot(), cpu_temperature_celsius=0.0)
    source = Source(first)
    reg = registry(source)
    assert b"camera_recorder_cpu_temperature_celsius 0.0\n" in generate_latest(reg)
    door, yard = first.cameras
    status = dataclasses.replace(
        door.status, frames=7, restarts=MappingProxyType({"stall": 3}),
        segment_durations=door.status.segment_durations.observe(2.0),
    )  # fmt: skip
    source.value = dataclasses.replace(
        first, cameras=(dataclasses.replace(door, status=status), yard), cpu_temperature_celsius=-0.0
    )
    text = generate_latest(reg)
    assert b"camera_recorder_cpu_temperature_celsius -0.0\n" in text
    assert b'camera_recorder_ffmpeg_restarts_total{camera="door",reason="stall"} 3.0\n' in text
    assert text == generate_latest(registry(Source(source.value)))


def write_goldens() -> None:
    """Rewrite both goldens from the collector as it is (run as a script, after a deliberate change)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(collector_module, "build_info", _fixed_build)
    try:
        TEXT_GOLDEN.write_bytes(generate_latest(registry(Source(snapshot()))))
        OPENMETRICS_GOLDEN.write_bytes(generate_openmetrics(registry(Source(snapshot()))))
    finally:
        patch.undo()


if __name__ == "__main__":
    sys.exit(write_goldens())
