"""The rooms the Storage facade wires (recorder/storage/retention/: snapshot builder, index entries, pressure guard,
folder watch), each on its own: a fake clock and fake statvfs readings, no daemon, no retention pass."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from recorder.config import ThresholdAction
from recorder.footage.segments import segment_file_name
from recorder.storage.retention.accounting import SnapshotBuilder
from recorder.storage.retention.filesystem import RecordingsFolder
from recorder.storage.retention.health import FolderWatch
from recorder.storage.retention.model import DeletedFile, DiskUsage, Entry
from recorder.storage.retention.planner import RetentionSettings
from recorder.storage.retention.pressure import PressureGuard
from recorder.storage.retention.state import StorageState

NOW = 1_700_000_000.0
SIZE = 1000 * 4096  # a 1000-block filesystem
BASE = Path("/srv/recordings")
CAMERAS = ("cam1", "cam2")


def make_state(
    base: Path = BASE,
    on_threshold: ThresholdAction = ThresholdAction.DELETE_OLDEST,
    min_free_minutes: float = 0.0,
) -> StorageState:
    settings = RetentionSettings(
        max_age=dict.fromkeys(CAMERAS, 86400.0),
        threshold=0.9,
        target=0.8,
        low_space=0.7,
        min_free_minutes=min_free_minutes,
        on_threshold=on_threshold,
        segment_time=60.0,
    )
    return StorageState(base, CAMERAS, settings, lambda: NOW, SnapshotBuilder(base, settings, default_max_age=None))


def used(ratio: float) -> DiskUsage:
    return DiskUsage(SIZE, round(SIZE * (1 - ratio)), 4096)


def segment(cam: str, start: float, size: int = 4096) -> Entry:
    return Entry(start, segment_file_name(cam, start), size, 60.0)


# ---------------------------------------------------------------------------------------------------
# SnapshotBuilder: one segment changes one camera's view; the counters are copied only when counted


def test_a_snapshot_reuses_the_views_of_cameras_that_did_not_change() -> None:
    state = make_state()
    first = state.snapshot
    with state.lock:
        state.index.add("cam1", segment("cam1", NOW - 60))
        state.publish_locked()
    second = state.snapshot
    assert second.cameras["cam1"].files == 1 and second.cameras["cam1"].newest_start == NOW - 60
    assert second.cameras["cam1"] is not first.cameras["cam1"]
    assert second.cameras["cam2"] is first.cameras["cam2"]
    assert second.deleted_files is first.deleted_files  # nothing counted: the same immutable copy
    with state.lock:
        state.publish_locked()
    assert state.snapshot.cameras is second.cameras  # nothing changed at all: the same mapping


def test_a_snapshot_copies_the_counters_when_they_change_and_older_snapshots_keep_their_counts() -> None:
    state = make_state()
    before = state.snapshot
    with state.lock:
        state.counters.count_deleted([DeletedFile("cam2", "x.mkv", "max_age", 4096, NOW - 90000)])
        state.counters.count_run("schedule", NOW)
        state.publish_locked()
    after = state.snapshot
    assert after.deleted_files[("cam2", "max_age")] == 1 and after.deleted_bytes[("cam2", "max_age")] == 4096
    assert after.runs["schedule"] == 1 and after.last_run_timestamp == NOW
    assert before.deleted_files[("cam2", "max_age")] == 0 and before.runs["schedule"] == 0


def test_a_view_is_rebuilt_when_only_the_write_rate_changes() -> None:
    state = make_state()
    with state.lock:
        state.index.add("cam1", segment("cam1", NOW - 120, 6000))
        state.index.add("cam1", segment("cam1", NOW - 60, 6000))
        state.publish_locked()
    assert state.snapshot.cameras["cam1"].write_rate_bytes_per_second == 0.0  # not yet refreshed
    with state.lock:
        state.index.refresh_rates(NOW)
        state.usage = used(0.5)
        state.publish_locked()
    snap = state.snapshot
    assert snap.cameras["cam1"].write_rate_bytes_per_second == pytest.approx(100.0)
    assert snap.write_rate_bytes_per_second == pytest.approx(100.0)
    # Usable: 90 % of the disk minus what is not recordings (50 % used, 12,000 bytes of which are ours).
    assert snap.capacity_seconds == pytest.approx((0.9 * SIZE - (0.5 * SIZE - 12000)) / 100.0)


# ---------------------------------------------------------------------------------------------------
# SegmentIndex.entry_for: which reported paths are segments of ours (lexically, no syscall)


@pytest.mark.parametrize(
    ("path", "ours"),
    [
        (BASE / "cam1" / segment_file_name("cam1", NOW), True),
        (f"{BASE}/cam1/{segment_file_name('cam1', NOW)}", True),  # a str works like a Path
        (f"{BASE}//cam1/./{segment_file_name('cam1', NOW)}", True),  # spelled loosely, same folder
        (f"{BASE}/cam2/../cam1/{segment_file_name('cam1', NOW)}", True),  # normalised like os.path.abspath
        (BASE / "cam2" / segment_file_name("cam1", NOW), False),  # another camera's folder
        (BASE / "cam1" / "sub" / segment_file_name("cam1", NOW), False),  # below the camera folder
        (Path("/elsewhere/cam1") / segment_file_name("cam1", NOW), False),
        (BASE / "cam1" / segment_file_name("cam2", NOW), False),  # named for another camera
        (BASE / "cam1" / "notes.txt", False),
    ],
)
def test_entry_for_accepts_only_segments_in_their_cameras_folder(path: Path | str, ours: bool) -> None:
    entry = make_state().index.entry_for("cam1", path, 123, 59.5)  # type: ignore[arg-type]
    if ours:
        assert entry == Entry(NOW, segment_file_name("cam1", NOW), 123, 59.5)
    else:
        assert entry is None


def test_entry_for_refuses_unknown_cameras_and_keeps_an_unknown_duration_as_zero() -> None:
    index = make_state().index
    assert index.entry_for("cam9", BASE / "cam9" / segment_file_name("cam9", NOW), 1, 60.0) is None
    entry = index.entry_for("cam2", BASE / "cam2" / segment_file_name("cam2", NOW), 1, -1.0)
    assert entry is not None and entry.duration == 0.0


def test_entry_for_resolves_a_relative_path_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = make_state(base=tmp_path).index
    monkeypatch.chdir(tmp_path)
    assert index.entry_for("cam1", Path("cam1") / segment_file_name("cam1", NOW), 1, 60.0) is not None
    monkeypatch.chdir(tmp_path.parent)
    assert index.entry_for("cam1", Path("cam1") / segment_file_name("cam1", NOW), 1, 60.0) is None


# ---------------------------------------------------------------------------------------------------
# PressureGuard: the stop_recording flag, the daemon told of it, and warnings once per episode


def test_stop_recording_flips_are_told_and_published_and_an_unknown_reading_keeps_the_flag() -> None:
    state = make_state(on_threshold=ThresholdAction.STOP_RECORDING)
    told: list[bool] = []
    guard = PressureGuard(state, 60.0, told.append)
    assert guard.update_recording_allowed(None) is True and told == []  # unknown: no first word
    assert guard.update_recording_allowed(used(0.5)) is True and told == [True]  # the first reading is told
    assert guard.update_recording_allowed(used(0.5)) is True and told == [True]
    assert guard.update_recording_allowed(used(0.95)) is False and told == [True, False]
    assert state.snapshot.recording_allowed is False
    assert guard.update_recording_allowed(None) is False and told == [True, False]
    assert guard.update_recording_allowed(used(0.85)) is True and told == [True, False, True]
    assert state.snapshot.recording_allowed is True


def test_delete_oldest_never_stops_recording_and_asks_for_a_pass_above_the_threshold() -> None:
    state = make_state()
    guard = PressureGuard(state, 60.0)
    assert guard.update_recording_allowed(used(0.99)) is True
    assert guard.wanted(used(0.95), rate=0.0) and not guard.wanted(used(0.85), rate=0.0)
    assert guard.need(used(0.95), rate=0.0) == pytest.approx(0.15 * SIZE, abs=1)
    assert not PressureGuard(make_state(on_threshold=ThresholdAction.STOP_RECORDING), 60.0).wanted(used(0.95), 0.0)


def test_the_next_check_comes_sooner_while_the_disk_fills_fast() -> None:
    state = make_state()
    guard = PressureGuard(state, 60.0)
    assert guard.next_delay() == 60.0  # no reading yet
    with state.lock:
        state.index.add("cam1", segment("cam1", NOW - 120, 409600))
        state.index.add("cam1", segment("cam1", NOW - 60, 409600))
        state.index.refresh_rates(NOW)
        state.usage = used(0.3)
        state.publish_locked()
    # 60 % of the disk until the threshold at 6,827 B/s: a quarter of that time is still over a minute...
    assert guard.next_delay() == 60.0
    with state.lock:
        state.usage = used(0.899)
        state.publish_locked()
    assert 0.2 <= guard.next_delay() < 60.0  # ...but not a thousandth of the disk away from it


def test_an_unmet_min_free_wish_is_published_and_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    state = make_state(min_free_minutes=60.0)
    guard = PressureGuard(state, 60.0)
    caplog.set_level(logging.INFO, logger="recorder.storage")
    for _ in range(3):
        guard.need(used(0.5), rate=SIZE / 60.0)  # a whole disk a minute: an hour can never be free
    assert state.snapshot.min_free_unmet is True
    guard.need(used(0.5), rate=0.0)  # no rate: the last word stays
    assert state.snapshot.min_free_unmet is True
    guard.need(used(0.5), rate=1.0)
    assert state.snapshot.min_free_unmet is False
    messages = [r.getMessage() for r in caplog.records]
    assert sum("needs more free space" in m for m in messages) == 1
    assert sum("min_free_minutes fits on" in m for m in messages) == 1


def test_a_pressure_pass_that_cannot_progress_is_logged_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    guard = PressureGuard(make_state(), 60.0)
    caplog.set_level(logging.WARNING, logger="recorder.storage")
    for _ in range(3):
        guard.note_outcome(used(0.95), deleted=0, rate=0.0)
    guard.note_outcome(used(0.85), deleted=5, rate=0.0)  # under the threshold again: the episode ends
    guard.note_outcome(used(0.95), deleted=1, rate=0.0)
    stuck = [r.getMessage() for r in caplog.records if "still" in r.getMessage()]
    assert stuck == [
        f"retention: {BASE} is still 95.0% used after deleting 0 files; the next checks try again",
        f"retention: {BASE} is still 95.0% used after deleting 1 files; the next checks try again",
    ]


# ---------------------------------------------------------------------------------------------------
# FolderWatch: statvfs readings and write failures into the shared state


def test_an_unreadable_filesystem_is_logged_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    readings: list[DiskUsage | OSError] = [OSError(5, "EIO"), OSError(5, "EIO"), used(0.5), OSError(5, "EIO")]

    def fs_usage(path: Path) -> DiskUsage:
        reading = readings.pop(0)
        if isinstance(reading, OSError):
            raise reading
        return reading

    state = make_state()
    watch = FolderWatch(state, RecordingsFolder(BASE, CAMERAS), fs_usage)
    caplog.set_level(logging.WARNING, logger="recorder.storage")
    assert [watch.read_usage() for _ in range(4)] == [None, None, used(0.5), None]
    assert sum("cannot read the filesystem" in r.getMessage() for r in caplog.records) == 2


def test_write_failures_set_writable_at_once_and_the_last_recovery_probes_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = make_state(base=tmp_path)
    watch = FolderWatch(state, RecordingsFolder(tmp_path, CAMERAS), lambda path: used(0.5))
    caplog.set_level(logging.INFO, logger="recorder.storage")
    assert watch.refresh() == used(0.5)
    assert state.snapshot.writable is True and state.snapshot.checked_at == NOW
    watch.note_write_result("cam1", "Read-only file system")
    watch.note_write_result("cam2", "Read-only file system")
    watch.note_write_result("cam1", "Read-only file system")
    assert state.snapshot.writable is False
    watch.note_write_result("cam1", None)
    assert state.snapshot.writable is False  # cam2 still fails
    watch.note_write_result("cam2", None)
    assert state.snapshot.writable is True  # probed again right away, and it worked
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"recordings folder {tmp_path} is not writable (camera cam1: Read-only file system)",
        f"recordings folder {tmp_path} is writable again",
    ]
