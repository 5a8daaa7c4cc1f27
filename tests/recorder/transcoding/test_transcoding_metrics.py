"""The `transcoding` sub-collector over a snapshot, and a real daemon transcoding while it records."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType

from conftest import probe, wait_for
from daemon_harness import Daemon, write_config
from prometheus_client import CollectorRegistry
from transcoding_support import make_segment

from exporter import metrics as m
from exporter.collector import RecorderCollector
from recorder.config import parse_config
from recorder.state.snapshots import RecorderSnapshot, TranscodeSnapshot
from recorder.storage.facade import Storage
from recorder.transcoding.gate import TranscodeState


def registry_for(tmp_path: Path, transcoding: TranscodeSnapshot | None) -> CollectorRegistry:
    config = parse_config({"cameras": {"cam1": {"test_pattern": True}}, "recording": {"base_directory": str(tmp_path)}})
    snap = RecorderSnapshot(
        version="0", ffmpeg_version="5", python_version="3", started_at=0.0, cameras=(),
        storage=Storage(config).snapshot(), hotplug_events={}, hotplug_mode="none", cpu_temperature_celsius=None,
        transcoding=transcoding,
    )  # fmt: skip

    class Source:
        def snapshot(self) -> RecorderSnapshot:
            return snap

    registry = CollectorRegistry()
    registry.register(RecorderCollector(Source(), codec_of={}, container="mkv", segment_time=2, stall_timeout=3))
    return registry


def test_disabled_transcoder_shows_only_its_state(tmp_path: Path) -> None:
    registry = registry_for(tmp_path, None)
    for state in m.TRANSCODE_STATES:
        expected = 1.0 if state == "disabled" else 0.0
        assert registry.get_sample_value("camera_recorder_transcode_state", {"state": state}) == expected
    assert registry.get_sample_value("camera_recorder_scrape_collector_success", {"collector": "transcoding"}) == 1
    labels = {"camera": "cam1", "result": "transcoded"}
    assert registry.get_sample_value("camera_recorder_transcode_segments_total", labels) is None


def test_counters_backlog_and_state_from_the_snapshot(tmp_path: Path) -> None:
    results = {("cam1", r): 0 for r in m.TRANSCODE_RESULTS} | {("cam1", "transcoded"): 3, ("cam1", "failed"): 1}
    snap = TranscodeSnapshot(
        state=TranscodeState.PAUSED_CPU,
        cameras=("cam1",),
        segments=MappingProxyType(results),
        input_bytes={"cam1": 3000}, output_bytes={"cam1": 1200}, seconds={"cam1": 12.5},
        backlog_segments={"cam1": 7}, backlog_bytes={"cam1": 7000}, last_success={"cam1": 1700000000.0},
    )  # fmt: skip
    registry = registry_for(tmp_path, snap)
    value = registry.get_sample_value
    assert value("camera_recorder_transcode_state", {"state": "paused_cpu"}) == 1
    assert value("camera_recorder_transcode_state", {"state": "running"}) == 0
    assert value("camera_recorder_transcode_segments_total", {"camera": "cam1", "result": "transcoded"}) == 3
    assert value("camera_recorder_transcode_segments_total", {"camera": "cam1", "result": "failed_verification"}) == 0
    assert value("camera_recorder_transcode_input_bytes_total", {"camera": "cam1"}) == 3000
    assert value("camera_recorder_transcode_output_bytes_total", {"camera": "cam1"}) == 1200
    assert value("camera_recorder_transcode_seconds_total", {"camera": "cam1"}) == 12.5
    assert value("camera_recorder_transcode_backlog_segments", {"camera": "cam1"}) == 7
    assert value("camera_recorder_transcode_backlog_bytes", {"camera": "cam1"}) == 7000
    assert value("camera_recorder_transcode_last_success_timestamp_seconds", {"camera": "cam1"}) == 1700000000.0


def _window_around_now() -> tuple[str, str]:
    """A local window from an hour ago to two hours ahead (it crosses midnight late in the evening)."""
    now = datetime.now()
    return (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=2)).strftime("%H:%M")


def test_daemon_transcodes_an_old_segment_while_both_cameras_record(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    seg = make_segment(base, "cam1", age_days=8, seconds=2)
    start, end = _window_around_now()
    config = write_config(
        tmp_path / "config.yaml", base,
        transcoding={
            "enabled": True, "codec": "libx265", "preset": "ultrafast", "quality": 22, "min_age_days": 7,
            "run_schedule_start": start, "run_schedule_end": end,
            # The test box is shared: CPU and I/O limits are the benchmark's business, not this test's.
            "max_cpu_percent": 100, "max_io_wait": 100, "min_free_space_gb": 0,
        },
    )  # fmt: skip
    daemon = Daemon(config)
    try:
        wait_for(
            lambda: daemon.value("camera_recorder_transcode_segments_total", camera="cam1", result="transcoded") == 1,
            timeout=90, what=f"the daemon to transcode {seg.name}\n{daemon.log()}",
        )  # fmt: skip
        assert probe(seg)["codec"] == "hevc"
        samples = daemon.samples()
        inp = samples[("camera_recorder_transcode_input_bytes_total", (("camera", "cam1"),))]
        out = samples[("camera_recorder_transcode_output_bytes_total", (("camera", "cam1"),))]
        assert 0 < out < inp
        assert samples[("camera_recorder_transcode_backlog_segments", (("camera", "cam1"),))] == 0
        last = samples[("camera_recorder_transcode_last_success_timestamp_seconds", (("camera", "cam1"),))]
        assert abs(last - time.time()) < 120
        # Nothing was lost meanwhile: both cameras recorded throughout.
        for cam in ("cam1", "cam2"):
            assert daemon.value("camera_recorder_camera_recording", camera=cam) == 1
            assert daemon.value("camera_recorder_dropped_frames_total", camera=cam) == 0
    finally:
        assert daemon.stop() == 0
