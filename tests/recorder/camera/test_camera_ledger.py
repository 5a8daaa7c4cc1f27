"""The pieces that keep a camera's numbers across supervisors, without FFmpeg: the ledger's handover, the
state machine and the report starting from it, the histogram under new bounds, and what a reload restarts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import pytest
from conftest import small_config

from recorder.camera.ledger import CameraLedger
from recorder.camera.report import CameraReport
from recorder.camera.states import CameraStateMachine
from recorder.config import CameraConfig, Codec, Config
from recorder.daemon.reload import restart_reasons
from recorder.domain.vocabulary import CameraState
from recorder.ffmpeg.binary import FFmpegTools
from recorder.state.snapshots import CameraSnapshot, Histogram, ResourceUsage, RestartEvent


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Retired:
    camera: CameraConfig
    snapshot: CameraSnapshot
    resources: ResourceUsage


def _camera(camera_id: str = "door") -> CameraConfig:
    return small_config(Path("/nonexistent"), cameras={camera_id: {"test_pattern": True}}).cameras[0]


def _last(gap_growing: bool, taken_at: float = 50.0) -> CameraSnapshot:
    return CameraSnapshot(
        camera="door", state=CameraState.STOPPED, present=True, taken_at=taken_at, frames=546, dropped_frames=2,
        duplicated_frames=1, written_bytes=4096, segments_completed=3,
        segment_durations=Histogram((1.0, 2.0), (1, 3, 3), 5.5), last_segment_at=123.0, last_progress_at=124.0,
        restarts=MappingProxyType({"crashed": 2}), discarded=MappingProxyType({"empty": 1}), gap_seconds=0.1376,
        gap_growing=gap_growing, last_error="boom", recent_restarts=(RestartEvent(100.0, "crashed", "boom"),) * 2,
    )  # fmt: skip


def test_a_restart_by_reload_is_counted_with_reason_config_and_on_the_timeline() -> None:
    ledger = CameraLedger(clock=lambda: 200.0)
    ledger.retire(Retired(_camera(), _last(True), ResourceUsage(7.5, 1234)), restart="config", why="reload: x")
    carried = ledger.carried("door")
    assert carried is not None and carried.cpu_seconds == 7.5
    assert dict(carried.snapshot.restarts) == {"crashed": 2, "config": 1}
    assert carried.snapshot.recent_restarts[-1] == RestartEvent(200.0, "config", "reload: x")
    assert ledger.carried("porch") is None


def test_the_next_supervisor_goes_on_from_every_counter_and_the_gap_without_a_dip() -> None:
    """The scrape read the old snapshot's gap extrapolated (gap_growing); the new one continues that line."""
    clock = FakeClock(60.0)
    ledger = CameraLedger(clock=lambda: 200.0)
    ledger.retire(Retired(_camera(), _last(True), ResourceUsage(7.5, 0)), restart="config")
    carried = ledger.carried("door")
    assert carried is not None
    machine = CameraStateMachine(clock, carried=carried.snapshot)
    assert machine.gap == pytest.approx(0.1376 + 10.0) and machine.counting_gap
    assert machine.restarts == {"crashed": 2, "config": 1}
    report = CameraReport("door", machine, True, (1.0, 2.0), clock=lambda: 300.0, monotonic=clock, carried=carried)
    snap = report.snapshot
    assert (snap.frames, snap.dropped_frames, snap.duplicated_frames) == (546, 2, 1)
    assert (snap.segments_completed, snap.written_bytes, snap.last_segment_at) == (3, 4096, 123.0)
    assert snap.segment_durations == Histogram((1.0, 2.0), (1, 3, 3), 5.5)
    assert dict(snap.discarded) == {"empty": 1} and snap.last_error == "boom"
    assert snap.ffmpeg_pid is None and snap.fps == 0.0 and report.resources == ResourceUsage(7.5, 0)
    clock.now = 61.0
    assert snap.gap_seconds_at(61.0) == pytest.approx(_last(True).gap_seconds_at(61.0))
    report.publish(True, None)  # no restart counted since: the timeline gets no new event
    assert len(report.snapshot.recent_restarts) == 3


def test_a_removed_camera_is_no_gap_and_is_listed_until_supervised_again() -> None:
    ledger = CameraLedger(clock=lambda: 200.0)
    ledger.retire(Retired(_camera("porch"), replace(_last(False), camera="porch"), ResourceUsage()))
    (view,) = ledger.removed(["door"])
    assert view.config.id == "porch" and view.status.frames == 546
    assert ledger.removed(["door", "porch"]) == ()
    carried = ledger.carried("porch")
    assert carried is not None
    machine = CameraStateMachine(FakeClock(500.0), carried=carried.snapshot)
    assert machine.gap == 0.1376 and not machine.counting_gap


def test_a_histogram_under_new_bounds_keeps_its_count_and_sum() -> None:
    hist = Histogram((1.0, 2.0), (1, 3, 4), 9.0)
    assert hist.rebucketed((1.0, 2.0)) is hist
    moved = hist.rebucketed((5.0, 10.0, 20.0))
    # The three observations at or below 2 are at or below 5, 10 and 20 too.
    assert moved.bounds == (5.0, 10.0, 20.0) and moved.counts == (3, 3, 3, 4) and moved.total == 9.0
    assert moved.observe(7.0).counts == (3, 4, 4, 5)


def _tools(ffmpeg: str = "ffmpeg") -> FFmpegTools:
    return FFmpegTools(ffmpeg=ffmpeg, ffprobe="ffprobe")


def _door(**settings: object) -> Config:
    door = {"test_pattern": True, "resolution": "160x120", "framerate": 25, "name": "Door", **settings}
    return small_config(Path("/tmp/rec"), cameras={"door": door})


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"name": "Front door"}, []),
        ({"cleanup_days": 3}, []),
        ({"resolution": "320x240"}, ["resolution changed"]),
        ({"framerate": 15, "name": "Front door"}, ["framerate changed"]),
    ],
    ids=["name", "cleanup_days", "resolution", "framerate_and_name"],
)
def test_what_a_reload_restarts_a_camera_for(change: dict[str, object], why: list[str]) -> None:
    old, new = _door(), _door(**change)
    assert restart_reasons(old, _tools(), old.cameras[0], new, _tools(), new.cameras[0]) == why


def test_settings_outside_the_camera_that_change_its_ffmpeg_or_supervision_restart_it() -> None:
    old = _door()
    encoded = replace(old, encoding=replace(old.encoding, codec=Codec.LIBX265))
    unheard = replace(old, encoding=replace(old.encoding, quality=30))  # x264 settings of a pattern: not in argv
    cam = old.cameras[0]
    assert restart_reasons(old, _tools(), cam, old, _tools("/opt/ffmpeg"), cam) == ["system.ffmpeg changed"]
    supervised = replace(old, supervisor=replace(old.supervisor, stall_timeout=9))
    assert restart_reasons(old, _tools(), cam, supervised, _tools(), cam) == ["supervisor settings changed"]
    longer = replace(old, recording=replace(old.recording, segment_time=60))
    assert restart_reasons(old, _tools(), cam, longer, _tools(), cam) == ["recording settings changed"]
    assert restart_reasons(old, _tools(), cam, encoded, _tools(), cam) == ["encoding settings changed"]
    assert restart_reasons(old, _tools(), cam, unheard, _tools(), cam) == []


def test_a_histogram_under_new_bounds_never_lowers_a_bucket_both_layouts_have() -> None:
    from recorder.state.snapshots import Histogram

    old = Histogram.empty((450.0, 900.0, 1350.0, 1800.0, 3600.0))
    for value in (400.0, 800.0, 1700.0, 1800.0, 5000.0):
        old = old.observe(value)
    new = old.rebucketed((225.0, 450.0, 675.0, 900.0, 1350.0, 1800.0))
    shared = {b: c for b, c in zip(old.bounds, old.counts, strict=False) if b in new.bounds}
    assert {b: c for b, c in zip(new.bounds, new.counts, strict=False) if b in shared} == shared
    assert new.counts == (0, 1, 1, 2, 2, 4, 5)  # cumulative, +Inf last: never above what was observed
    assert (new.count, new.total) == (old.count, old.total)
