"""The collector over a hand-made snapshot: a fresh registry, get_sample_value; no daemon, no HTTP, no disk."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
from conftest import small_config
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from exporter import metrics as m
from exporter.collector import RecorderCollector
from recorder.domain.vocabulary import CameraState
from recorder.state.snapshots import CameraSnapshot, CameraView, RecorderSnapshot, ResourceUsage
from recorder.storage.facade import Storage


class Source:
    def __init__(self, snapshot: RecorderSnapshot) -> None:
        self.value = snapshot

    def snapshot(self) -> RecorderSnapshot:
        return self.value


def recorder_snapshot(tmp_path: Path, state: CameraState = CameraState.RECORDING) -> RecorderSnapshot:
    config = small_config(tmp_path)
    camera = config.cameras[0]
    status = CameraSnapshot(
        camera=camera.id,
        state=state,
        present=True,
        taken_at=100.0,
        frames=250,
        restarts=MappingProxyType({"stall": 2}),
        gap_seconds=3.0,
    )
    return RecorderSnapshot(
        version="1.2.3",
        ffmpeg_version="6.1",
        python_version="3.12.0",
        started_at=1_700_000_000.0,
        cameras=(CameraView(camera, status, ResourceUsage(cpu_seconds=1.5, rss_bytes=1 << 20), codec="libx264"),),
        storage=Storage(config).snapshot(),
        hotplug_events=MappingProxyType({("add", True): 4}),
        hotplug_mode="udev",
        cpu_temperature_celsius=None,
        monotonic_now=100.0,
    )


def registry_of(snapshot: RecorderSnapshot, **collector: object) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    options: dict[str, object] = {"codec_of": {}, "container": "mkv", "segment_time": 2.0, "stall_timeout": 3.0}
    registry.register(RecorderCollector(Source(snapshot), **{**options, **collector}))  # type: ignore[arg-type]
    return registry


def test_every_state_is_present_and_only_the_current_one_is_1(tmp_path: Path) -> None:
    registry = registry_of(recorder_snapshot(tmp_path, CameraState.BACKOFF))
    values = {
        s: registry.get_sample_value(m.CAMERA_STATE.name, {"camera": "cam1", "state": s}) for s in m.CAMERA_STATES
    }
    assert values == {s: 1.0 if s == "backoff" else 0.0 for s in m.CAMERA_STATES}


def test_every_restart_reason_is_present_and_counts_come_from_the_snapshot(tmp_path: Path) -> None:
    registry = registry_of(recorder_snapshot(tmp_path))
    name = m.FFMPEG_RESTARTS.exposed_name
    values = {r: registry.get_sample_value(name, {"camera": "cam1", "reason": r}) for r in m.RESTART_REASONS}
    assert values == {r: 2.0 if r == "stall" else 0.0 for r in m.RESTART_REASONS}
    assert registry.get_sample_value(m.FRAMES.exposed_name, {"camera": "cam1"}) == 250.0
    assert registry.get_sample_value(m.RECORDING_GAP.exposed_name, {"camera": "cam1"}) == 3.0
    assert registry.get_sample_value(f"{m.CAMERA_INFO.name}_info", {"camera": "cam1", "name": "cam1",
        "source": "test_pattern", "codec": "libx264", "container": "mkv"}) == 1.0  # fmt: skip


def test_each_sub_collector_reports_its_success(tmp_path: Path) -> None:
    registry = registry_of(recorder_snapshot(tmp_path), webhook_results=lambda: {"accepted": 5})
    for name in m.SUB_COLLECTORS:
        assert registry.get_sample_value(m.SCRAPE_SUCCESS.name, {"collector": name}) == 1.0
    assert registry.get_sample_value(m.WEBHOOK_REQUESTS.exposed_name, {"result": "accepted"}) == 5.0
    labels = {"action": "add", "matched": "true"}
    assert registry.get_sample_value(m.HOTPLUG_EVENTS.exposed_name, labels) == 4.0


def test_a_failing_sub_collector_is_reported_and_the_others_still_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: RecorderCollector, snap: RecorderSnapshot) -> Iterator[Metric]:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(RecorderCollector, "_events", broken)
    registry = registry_of(recorder_snapshot(tmp_path))
    assert registry.get_sample_value(m.SCRAPE_SUCCESS.name, {"collector": "events"}) == 0.0
    assert registry.get_sample_value(m.SCRAPE_SUCCESS.name, {"collector": "cameras"}) == 1.0
    assert registry.get_sample_value(m.FRAMES.exposed_name, {"camera": "cam1"}) == 250.0


def test_orphaned_footage_has_its_own_families_and_at_most_a_bounded_set_of_camera_series(tmp_path: Path) -> None:
    # 25 folders of removed cameras on disk, real segments, through the real Storage: the 20 largest are
    # shown by name, the other 5 summed as `_other`, and nothing of theirs appears in the configured families.
    from recorder.footage.segments import segment_file_name

    base = tmp_path / "rec"
    for i in range(25):
        folder = base / f"gone{i:02d}"
        folder.mkdir(parents=True)
        (folder / segment_file_name(folder.name, 1_700_000_000.0 + i)).write_bytes(b"x" * (100 + i))
    config = small_config(base)
    storage = Storage(config)
    storage.scan()
    snap = recorder_snapshot(tmp_path)
    registry = registry_of(dataclasses.replace(snap, storage=storage.snapshot()))
    value = registry.get_sample_value
    assert value(m.ORPHANED_FOLDERS.name, {"path": str(base)}) == 25.0
    shown = {f"gone{i:02d}": 100.0 + i for i in range(5, 25)}
    for camera, size in shown.items():
        assert value(m.ORPHANED_RECORDINGS_BYTES.name, {"camera": camera}) == size
        assert value(m.ORPHANED_RECORDINGS_FILES.name, {"camera": camera}) == 1.0
    assert value(m.ORPHANED_RECORDINGS_BYTES.name, {"camera": "_other"}) == sum(100.0 + i for i in range(5))
    assert value(m.ORPHANED_RECORDINGS_FILES.name, {"camera": "_other"}) == 5.0
    assert value(m.ORPHANED_OLDEST_RECORDING.name, {"camera": "_other"}) == 1_700_000_000.0
    assert value(m.ORPHANED_RECORDINGS_BYTES.name, {"camera": "gone00"}) is None
    assert value(m.RECORDINGS_BYTES.name, {"camera": "gone24"}) is None  # the configured families keep theirs
    orphaned = [
        s for metric in registry.collect() if metric.name.startswith(m.NAMESPACE + "_orphaned_recordings_bytes")
        for s in metric.samples
    ]  # fmt: skip
    assert len(orphaned) == m.ORPHANED_CAMERAS_SHOWN + 1
    for reason in m.DELETION_REASONS:
        labels = {"path": str(base), "reason": reason}
        assert value(m.RETENTION_ORPHANED_DELETED_FILES.exposed_name, labels) == 0.0


def test_the_recording_gap_never_reads_less_than_a_scrape_before(tmp_path: Path) -> None:
    # A scrape that reads the snapshot of a camera leaving its gap state extrapolates past the moment the
    # state machine accounts it; the next snapshot holds a hair less. The counter must not go down.
    growing = recorder_snapshot(tmp_path, CameraState.BACKOFF)
    view = growing.cameras[0]
    growing = dataclasses.replace(
        growing,
        cameras=(dataclasses.replace(view, status=dataclasses.replace(view.status, gap_growing=True)),),
        monotonic_now=100.5,
    )
    source = Source(growing)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        RecorderCollector(source, codec_of={}, container="mkv", segment_time=2.0, stall_timeout=3.0)  # type: ignore[arg-type]
    )
    gap = "camera_recorder_recording_gap_seconds_total"
    assert registry.get_sample_value(gap, {"camera": "cam1"}) == pytest.approx(3.5)
    accounted = dataclasses.replace(view.status, state=CameraState.STARTING, gap_seconds=3.4, gap_growing=False)
    source.value = dataclasses.replace(growing, cameras=(dataclasses.replace(view, status=accounted),))
    assert registry.get_sample_value(gap, {"camera": "cam1"}) == pytest.approx(3.5)
    later = dataclasses.replace(accounted, gap_seconds=4.0)
    source.value = dataclasses.replace(growing, cameras=(dataclasses.replace(view, status=later),))
    assert registry.get_sample_value(gap, {"camera": "cam1"}) == pytest.approx(4.0)
