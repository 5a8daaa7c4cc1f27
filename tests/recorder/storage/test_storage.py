"""Storage accounting and retention, on real files; the disk-pressure cases on a real 8 MiB tmpfs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import mounted_tmpfs

from exporter.metrics import DELETION_REASONS, RETENTION_TRIGGERS
from recorder.config import Config, parse_config
from recorder.footage.segments import CompletedSegment, parse_segment_name, segment_file_name
from recorder.footage.write_probe import PROBE_NAME
from recorder.storage.facade import Storage
from recorder.storage.report import format_report, format_stats

KIB = 1024
MIB = 1024 * KIB
SEG = 512 * KIB  # whole 4 KiB pages, so tmpfs usage is exactly the sum of the files
STEP = 64  # seconds between a camera's segments; the other camera is offset by half of it
T0 = parse_segment_name("cam1_20240301_120000.mkv").start  # type: ignore[union-attr]
NOW = T0 + 6 * STEP  # just after the sixth segment of each camera


def name(cam: str, start: float, ext: str = "mkv") -> str:
    """The segment file name FFmpeg would give a segment starting at `start` (the code's own naming, UTC)."""
    return segment_file_name(cam, start, ext)


def write(base: Path, cam: str, start: float, size: int = SEG) -> Path:
    folder = base / cam
    folder.mkdir(exist_ok=True)
    path = folder / name(cam, start)
    # Real bytes, not a sparse truncate, so the filesystem allocates them.
    path.write_bytes(b"\0" * size)
    return path


def fill(base: Path, per_camera: int = 6) -> list[Path]:
    """cam1 at T0, T0+64, ...; cam2 at T0+32, T0+96, ...: global oldest-first order alternates cameras."""
    paths = []
    for i in range(per_camera):
        paths.append(write(base, "cam1", T0 + i * STEP))
        paths.append(write(base, "cam2", T0 + STEP / 2 + i * STEP))
    return paths  # oldest first across cameras


def config(base: Path, storage: dict[str, Any] | None = None, cameras: dict[str, Any] | None = None) -> Config:
    raw = {
        "cameras": cameras or {"cam1": {"test_pattern": True}, "cam2": {"test_pattern": True}},
        "recording": {"base_directory": str(base), "segment_time": STEP},
        # A tiny min_free_minutes so that only the tests about it see it act.
        "storage": {"min_free_minutes": 0.01, **(storage or {})},
    }
    return parse_config(raw)


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def usage_ratio(path: Path) -> float:
    st = os.statvfs(path)
    return 1 - st.f_bavail / st.f_blocks


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """8 MiB here: these tests fill it with a few segments."""
    with mounted_tmpfs(tmp_path / "fs", "8m") as mnt:
        yield mnt


# ---------------------------------------------------------------------------------------------------
# disk_pressure on a real filesystem


def test_disk_pressure_deletes_oldest_across_cameras_and_spares_the_active_file(tmpfs: Path) -> None:
    paths = fill(tmpfs)  # 12 x 512 KiB = 6 MiB of 8 MiB: 75 %
    active: set[Path] = set()
    cfg = config(tmpfs, {"disk_usage_threshold": 70, "low_space_warning": 50, "pressure_target": 55})
    storage = Storage(cfg, clock=lambda: NOW, active_paths=lambda: active)
    storage.scan()
    # The oldest file becomes open in FFmpeg after the scan: the index is stale, the pass must still spare it.
    active.add(paths[0])

    report = storage.run_pass("disk_pressure")

    # 75 % -> 55 % needs 1.6 MiB: four 512 KiB files, the oldest across both cameras minus the active one.
    expected = paths[1:5]
    assert names([report.path(f) for f in report.files]) == names(expected)
    assert {f.reason for f in report.files} == {"disk_pressure"}
    assert all(not p.exists() for p in expected)
    assert all(p.exists() for p in [paths[0], *paths[5:]])
    assert usage_ratio(tmpfs) <= 0.55
    assert report.used_ratio_after is not None and report.used_ratio_after <= 0.55
    snap = storage.snapshot()
    assert snap.deleted_files[("cam1", "disk_pressure")] == 2
    assert snap.deleted_files[("cam2", "disk_pressure")] == 2
    assert snap.deleted_bytes[("cam1", "disk_pressure")] == 2 * SEG
    assert snap.deleted_files[("cam1", "max_age")] == 0
    assert snap.runs["disk_pressure"] == 1 and snap.last_run_timestamp == NOW
    assert snap.cameras["cam1"].files == 4 and snap.cameras["cam2"].files == 4
    assert snap.cameras["cam1"].oldest_start == T0  # the spared active file
    assert snap.cameras["cam2"].oldest_start == T0 + STEP / 2 + 2 * STEP


def test_check_runs_the_pressure_pass_on_its_own(tmpfs: Path) -> None:
    paths = fill(tmpfs)
    storage = Storage(
        config(tmpfs, {"disk_usage_threshold": 70, "low_space_warning": 50, "pressure_target": 55}), clock=lambda: NOW
    )
    storage.scan()

    storage.check()

    assert [p.exists() for p in paths] == [False] * 4 + [True] * 8
    snap = storage.snapshot()
    assert snap.runs["schedule"] == 1 and snap.runs["disk_pressure"] == 1
    assert snap.used_ratio is not None and snap.used_ratio <= 0.55
    assert snap.writable is True


def test_min_free_minutes_deletes_until_the_space_lasts_that_long(tmpfs: Path) -> None:
    paths = fill(tmpfs)  # 2 MiB free; each camera writes 512 KiB per 64 s = 8 KiB/s, 16 KiB/s in all
    # The wish may act below the threshold but never deletes below pressure_target: 55 % leaves it room.
    cfg = config(tmpfs, {"disk_usage_threshold": 90, "pressure_target": 55, "min_free_minutes": 3.5})
    storage = Storage(cfg, clock=lambda: NOW)
    storage.scan()
    assert storage.snapshot().write_rate_bytes_per_second == 16 * KIB

    report = storage.run_pass("disk_pressure")

    # 3.5 min at 16 KiB/s = 3360 KiB wanted, 2048 KiB free: 1312 KiB to free, i.e. three segments.
    assert names([report.path(f) for f in report.files]) == names(paths[:3])
    assert os.statvfs(tmpfs).f_bavail * 4096 >= 3.5 * 60 * 16 * KIB


def test_dry_run_deletes_nothing_and_lists_what_a_real_pass_deletes(tmpfs: Path) -> None:
    paths = fill(tmpfs)
    storage = Storage(
        config(tmpfs, {"disk_usage_threshold": 70, "low_space_warning": 50, "pressure_target": 55}), clock=lambda: NOW
    )
    storage.scan()

    dry = storage.run_pass("manual", dry_run=True)

    assert all(p.exists() for p in paths)
    assert dry.dry_run and dry.file_count == 4
    snap = storage.snapshot()
    assert snap.runs["manual"] == 0 and snap.last_run_timestamp is None
    assert sum(snap.deleted_files.values()) == 0

    real = storage.run_pass("manual")
    assert real.files == dry.files
    assert [p.exists() for p in paths] == [False] * 4 + [True] * 8
    assert storage.snapshot().runs["manual"] == 1


def test_stop_recording_deletes_nothing_for_pressure_and_flips_recording_allowed(tmpfs: Path) -> None:
    paths = fill(tmpfs)
    flips: list[bool] = []
    cfg = config(
        tmpfs,
        {
            "disk_usage_threshold": 70,
            "low_space_warning": 50,
            "on_threshold": "stop_recording",
            "cleanup_enabled": False,
        },
    )
    storage = Storage(cfg, clock=lambda: NOW, on_recording_allowed=flips.append)
    storage.scan()

    storage.check()
    report = storage.run_pass("disk_pressure")

    assert all(p.exists() for p in paths)
    assert report.file_count == 0 and not report.recording_allowed
    assert storage.recording_allowed() is False and storage.snapshot().recording_allowed is False
    assert flips == [False]

    for p in paths[:4]:  # the operator makes room: 50 % used
        p.unlink()
    storage.check()
    assert storage.recording_allowed() is True
    assert flips == [False, True]


def test_the_first_reading_tells_the_recording_allowed_flag_even_without_a_flip(tmpfs: Path) -> None:
    """A Storage a reload builds starts allowed while the cameras may still be paused by the one it replaces:
    its first reading is told even when it finds the disk under the threshold; later only flips are."""
    told: list[bool] = []
    cfg = config(tmpfs, {"disk_usage_threshold": 70, "low_space_warning": 50, "on_threshold": "stop_recording"})

    def unreadable(base: Path) -> Any:
        raise OSError(5, "Input/output error", str(base))

    blind = Storage(cfg, on_recording_allowed=told.append, fs_usage=unreadable)
    blind.refresh_filesystem()
    assert told == [], "an unknown reading decides nothing"

    storage = Storage(cfg, on_recording_allowed=told.append)
    storage.refresh_filesystem()
    assert told == [True]
    storage.refresh_filesystem()
    assert told == [True]


def test_stop_recording_still_applies_max_age(tmpfs: Path) -> None:
    paths = fill(tmpfs)
    # 0.002 days = 172.8 s: everything started before NOW - 172.8 = T0 + 211.2 is too old.
    cfg = config(
        tmpfs,
        {"disk_usage_threshold": 70, "low_space_warning": 50, "on_threshold": "stop_recording", "cleanup_days": 0.002},
    )
    storage = Storage(cfg, clock=lambda: NOW)
    storage.scan()

    assert storage.run_pass("disk_pressure").file_count == 0
    assert storage.recording_allowed() is False
    report = storage.run_pass("schedule")

    assert names([report.path(f) for f in report.files]) == names(
        [p for p in paths if parse_segment_name(p.name).start < NOW - 172.8]  # type: ignore[union-attr]
    )
    assert {f.reason for f in report.files} == {"max_age"}
    assert storage.recording_allowed() is True


def test_alert_free_space_goes_below_the_low_space_warning(tmpfs: Path) -> None:
    paths = fill(tmpfs)
    # The warning above the pressure target: the alert frees below the warning (never below the target).
    cfg = config(tmpfs, {"disk_usage_threshold": 90, "low_space_warning": 40, "pressure_target": 35})
    storage = Storage(cfg, clock=lambda: NOW)
    storage.scan()
    assert not storage.alive
    storage.start()
    try:
        assert storage.alive
        report = storage.request("free_space", timeout=10)
    finally:
        storage.stop()
    assert not storage.alive

    # 75 % -> below 40 % needs just over 2.8 MiB: six segments, oldest first.
    assert names([report.path(f) for f in report.files]) == names(paths[:6])
    assert usage_ratio(tmpfs) < 0.40
    snap = storage.snapshot()
    assert snap.deleted_files[("cam1", "alert")] == 3 and snap.deleted_files[("cam2", "alert")] == 3
    assert snap.deleted_bytes[("cam2", "alert")] == 3 * SEG
    assert snap.runs["alert"] == 1


def test_write_probe_fails_on_a_read_only_remount(tmpfs: Path) -> None:
    storage = Storage(config(tmpfs))
    storage.refresh_filesystem()
    assert storage.snapshot().writable is True
    assert not [p for p in tmpfs.rglob(PROBE_NAME + "*")]  # every probe file removed

    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    try:
        storage.refresh_filesystem()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)

    snap = storage.snapshot()
    assert snap.writable is False
    assert snap.filesystem_size_bytes == 8 * MIB  # statvfs still works on a read-only filesystem


def test_write_probe_fails_on_a_full_filesystem(tmpfs: Path) -> None:
    with pytest.raises(OSError), open(tmpfs / "filler", "wb") as f:
        f.write(b"\0" * (9 * MIB))  # ENOSPC part-way
    storage = Storage(config(tmpfs))
    storage.refresh_filesystem()
    assert storage.snapshot().writable is False
    assert storage.snapshot().filesystem_avail_bytes == 0
    assert not [p for p in tmpfs.rglob(PROBE_NAME + "*")]  # every probe file removed


def test_capacity_is_the_usable_space_over_the_write_rate(tmpfs: Path) -> None:
    fill(tmpfs)
    (tmpfs / "other-data").write_bytes(b"\0" * MIB)  # not a recording: counts against the usable space
    storage = Storage(config(tmpfs, {"disk_usage_threshold": 90}), clock=lambda: NOW)
    storage.scan()
    storage.refresh_filesystem()

    snap = storage.snapshot()
    usable = 0.9 * 8 * MIB - 1 * MIB  # threshold * size - (used - recordings)
    assert snap.capacity_seconds == pytest.approx(usable / (16 * KIB))
    assert snap.bytes == 12 * SEG


# ---------------------------------------------------------------------------------------------------
# max_age and what is never deleted


def aged(base: Path) -> dict[str, list[Path]]:
    """Segments 5 days, 2 days, 12 hours and 10 s old for each camera."""
    return {
        cam: [write(base, cam, NOW - age, 10) for age in (5 * 86400, 2 * 86400, 43200, 10)] for cam in ("cam1", "cam2")
    }


def test_max_age_deletes_by_age_with_the_per_camera_override(tmp_path: Path) -> None:
    files = aged(tmp_path)
    cams = {"cam1": {"test_pattern": True}, "cam2": {"test_pattern": True, "cleanup_days": 1}}
    storage = Storage(config(tmp_path, {"cleanup_days": 3}, cams), clock=lambda: NOW)
    storage.scan()

    report = storage.run_pass("schedule")

    deleted = {report.path(f) for f in report.files}
    assert deleted == {files["cam1"][0], files["cam2"][0], files["cam2"][1]}
    assert [p.exists() for p in files["cam1"]] == [False, True, True, True]
    assert [p.exists() for p in files["cam2"]] == [False, False, True, True]
    snap = storage.snapshot()
    assert snap.cameras["cam1"].max_age_seconds == 3 * 86400
    assert snap.cameras["cam2"].max_age_seconds == 86400
    assert snap.deleted_files[("cam2", "max_age")] == 2 and snap.deleted_bytes[("cam2", "max_age")] == 20
    assert snap.runs["schedule"] == 1
    assert snap.cameras["cam2"].oldest_start == NOW - 43200


def test_enforce_max_age_alert_runs_max_age_now(tmp_path: Path) -> None:
    files = aged(tmp_path)
    storage = Storage(config(tmp_path, {"cleanup_days": 1}), clock=lambda: NOW)
    storage.scan()

    report = storage.request("enforce_max_age")  # no thread running: served in this thread

    assert {f.reason for f in report.files} == {"max_age"} and report.file_count == 4
    assert not files["cam1"][1].exists() and files["cam1"][2].exists()
    snap = storage.snapshot()
    assert snap.runs["alert"] == 1 and snap.runs["schedule"] == 0
    assert snap.deleted_files[("cam1", "max_age")] == 2


def test_only_segments_of_configured_cameras_in_their_own_folder_are_touched(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    base.mkdir()
    old = NOW - 40 * 86400
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / name("cam1", old)
    target.write_bytes(b"x")
    (base / "cam1").mkdir()
    (base / "cam1" / name("cam1", old + 1)).symlink_to(target)  # a symlink named like a segment
    survivors = [
        base / "cam1" / "notes.txt",
        base / "cam1" / (name("cam1", old) + ".part"),
        base / "cam1" / "cam1_20241399_000000.mkv",  # month 13: not a segment name
        base / "cam1" / name("cam9", old),  # an unconfigured camera's segment
        base / "cam1" / name("cam2", old),  # another camera's segment in the wrong folder
        base / "cam9" / name("cam2", old),  # another camera's segment in an unconfigured camera's folder
        base / name("cam1", old),  # a segment outside any camera folder
    ]
    for p in survivors:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    (base / "cam1" / name("cam1", old + 2)).mkdir()  # a folder named like a segment
    # cam2's folder is a symlink to a folder of old cam2 segments elsewhere.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    walled = [elsewhere / name("cam2", old + i) for i in range(3)]
    for p in walled:
        p.write_bytes(b"x")
    (base / "cam2").symlink_to(elsewhere, target_is_directory=True)
    real = write(base, "cam1", old + 3, 10)
    # Issue 19: an unconfigured camera's own segments in its own folder are footage retention ages too (by
    # cleanup_days); they used to be left alone, filling the disk (tests/recorder/storage/test_retention_orphans.py).
    orphan = write(base, "cam9", old + 4, 10)
    storage = Storage(config(base, {"cleanup_days": 30}), clock=lambda: NOW)
    storage.scan()

    snap = storage.snapshot()
    assert snap.cameras["cam1"].files == 1 and snap.cameras["cam2"].files == 0
    assert list(snap.orphans) == ["cam9"] and snap.orphans["cam9"].files == 1
    report = storage.run_pass("manual")

    assert [report.path(f) for f in report.files] == [real, orphan]
    assert target.exists() and (base / "cam1" / name("cam1", old + 1)).is_symlink()
    assert all(p.exists() for p in survivors + walled)
    assert (base / "cam1" / name("cam1", old + 2)).is_dir()


def test_a_camera_folder_swapped_for_a_symlink_after_the_scan_is_not_entered(tmp_path: Path) -> None:
    old = NOW - 40 * 86400
    paths = [write(tmp_path, "cam1", old + i, 10) for i in range(3)]
    storage = Storage(config(tmp_path, {"cleanup_days": 30}), clock=lambda: NOW)
    storage.scan()
    # Same names elsewhere, and cam1 now points there: the index still lists them.
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "cam1").rename(elsewhere)
    (tmp_path / "cam1").symlink_to(elsewhere, target_is_directory=True)

    report = storage.run_pass("schedule")

    assert report.file_count == 0
    assert all((elsewhere / p.name).exists() for p in paths)


def test_the_newest_segment_of_a_camera_is_spared_while_it_may_be_written(tmp_path: Path) -> None:
    # Everything is past max_age because the clock says so, but cam1's newest started 90 s (< 1.5 x 64 s) ago.
    a = write(tmp_path, "cam1", NOW - 200, 10)
    b = write(tmp_path, "cam1", NOW - 90, 10)
    storage = Storage(config(tmp_path, {"cleanup_days": 0.001}), clock=lambda: NOW)  # 86.4 s
    storage.scan()

    report = storage.run_pass("schedule")

    assert [report.path(f) for f in report.files] == [a]
    assert b.exists()


# ---------------------------------------------------------------------------------------------------
# Accounting


def test_accounting_follows_add_segment_forget_and_resync(tmp_path: Path) -> None:
    first = write(tmp_path, "cam1", T0, 100)
    storage = Storage(config(tmp_path), clock=lambda: T0 + 3 * STEP)
    storage.scan()
    assert storage.snapshot().cameras["cam1"].files == 1

    second = write(tmp_path, "cam1", T0 + STEP, 6400)
    assert storage.add_segment(CompletedSegment("cam1", second, T0 + STEP, STEP, 6400))
    cam = storage.snapshot().cameras["cam1"]
    assert (cam.files, cam.bytes, cam.oldest_start, cam.newest_start) == (2, 6500, T0, T0 + STEP)
    # first: 100 B over the 64 s until the next start; second: 6400 B over its reported 64 s.
    assert cam.write_rate_bytes_per_second == pytest.approx(6500 / 128)

    # Reported again with its final size: replaced, not counted twice.
    assert storage.add_segment(CompletedSegment("cam1", second, T0 + STEP, STEP, 6500))
    assert storage.snapshot().cameras["cam1"].bytes == 6600

    # Not ours: outside the folder, wrong camera, unconfigured camera, not a segment name.
    stray = tmp_path / "elsewhere" / name("cam1", T0 + 2 * STEP)
    assert not storage.add_segment(CompletedSegment("cam1", stray, T0, STEP, 1))
    assert not storage.add_segment(CompletedSegment("cam2", tmp_path / "cam1" / name("cam1", T0), T0, STEP, 1))
    assert not storage.add_segment(CompletedSegment("cam9", tmp_path / "cam9" / name("cam9", T0), T0, STEP, 1))
    assert not storage.add_segment(CompletedSegment("cam1", tmp_path / "cam1" / "x.mkv", T0, STEP, 1))
    assert storage.snapshot().cameras["cam1"].files == 2

    assert storage.forget(second) and not storage.forget(second)
    assert storage.snapshot().cameras["cam1"].files == 1

    first.unlink()  # someone else deletes a file, another appears
    third = write(tmp_path, "cam2", T0 + 5, 7)
    storage.resync()
    snap = storage.snapshot()
    assert snap.cameras["cam1"].files == 1  # `second` is still on disk: the resync finds it again
    assert snap.cameras["cam1"].oldest_start == T0 + STEP
    assert (snap.cameras["cam2"].files, snap.cameras["cam2"].bytes) == (1, 7)
    assert third.exists()


def test_a_segment_reported_while_a_resync_lists_the_disk_is_kept(tmp_path: Path) -> None:
    write(tmp_path, "cam1", T0, 10)
    late = tmp_path / "cam1" / name("cam1", T0 + STEP)
    storage: Storage

    def active() -> list[Path]:
        # Called by the resync after it started queueing: the supervisor reports a segment meanwhile, before
        # the file shows in the listing (it is written right after).
        if not late.exists():
            storage.add_segment(CompletedSegment("cam1", late, T0 + STEP, STEP, 20))
            late.write_bytes(b"\0" * 20)
        return []

    storage = Storage(config(tmp_path), clock=lambda: T0 + 2 * STEP, active_paths=active)
    storage.resync()

    cam = storage.snapshot().cameras["cam1"]
    assert (cam.files, cam.bytes) == (2, 30)


def test_scan_skips_files_being_written(tmp_path: Path) -> None:
    done = write(tmp_path, "cam1", T0, 10)
    open_one = write(tmp_path, "cam1", T0 + STEP, 5)
    storage = Storage(config(tmp_path), active_paths=lambda: [open_one])
    storage.scan()
    cam = storage.snapshot().cameras["cam1"]
    assert (cam.files, cam.bytes, cam.newest_start) == (1, 10, T0)
    assert done.exists()


def test_snapshot_is_immutable_and_only_replaced_on_change(tmp_path: Path) -> None:
    storage = Storage(config(tmp_path))
    snap = storage.snapshot()
    assert storage.snapshot() is snap
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.writable = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.deleted_files[("cam1", "max_age")] = 5  # type: ignore[index]
    assert set(snap.deleted_files) == {(c, r) for c in ("cam1", "cam2") for r in DELETION_REASONS}
    assert set(snap.runs) == set(RETENTION_TRIGGERS)
    assert snap.writable is None and snap.filesystem_size_bytes is None and snap.capacity_seconds is None
    storage.refresh_filesystem()
    assert storage.snapshot() is not snap


def test_bad_trigger_or_action_is_refused(tmp_path: Path) -> None:
    storage = Storage(config(tmp_path))
    with pytest.raises(ValueError):
        storage.run_pass("sometimes")
    with pytest.raises(ValueError):
        storage.run_pass("alert")
    with pytest.raises(ValueError):
        storage.run_pass("alert", action="format_disk")


# ---------------------------------------------------------------------------------------------------
# CLI output


def test_format_stats_json_and_table(tmpfs: Path) -> None:
    fill(tmpfs, per_camera=3)
    cfg = config(tmpfs, {"disk_usage_threshold": 90, "low_space_warning": 80, "cleanup_days": 7})
    storage = Storage(cfg, clock=lambda: T0 + 3 * STEP)
    storage.scan()
    storage.refresh_filesystem()
    snap = storage.snapshot()

    data = json.loads(format_stats(snap, cfg, as_json=True))
    assert list(data) == ["path", "filesystem", "retention", "total", "cameras", "orphaned"]
    assert set(data["filesystem"]) == {"size_bytes", "avail_bytes", "used_ratio", "writable", "checked_at"}
    assert data["filesystem"]["size_bytes"] == 8 * MIB and data["filesystem"]["writable"] is True
    assert data["filesystem"]["used_ratio"] == pytest.approx(0.375)
    assert data["retention"]["disk_usage_threshold_ratio"] == 0.9
    assert data["retention"]["capacity_days"] == pytest.approx(snap.capacity_seconds / 86400)  # type: ignore[operator]
    assert data["total"] == {"files": 6, "bytes": 6 * SEG, "write_rate_bytes_per_second": 16 * KIB}
    cam1 = data["cameras"][0]
    assert set(cam1) == {
        "camera", "name", "enabled", "configured", "files", "bytes", "oldest_start", "newest_start", "kept_seconds",
        "write_rate_bytes_per_second", "max_age_seconds", "deleted_files", "deleted_bytes",
    }  # fmt: skip
    assert cam1["configured"] is True and data["orphaned"]["folders"] == 0
    assert (cam1["camera"], cam1["files"], cam1["bytes"]) == ("cam1", 3, 3 * SEG)
    assert cam1["oldest_start"] == T0 and cam1["newest_start"] == T0 + 2 * STEP
    assert cam1["max_age_seconds"] == 7 * 86400
    assert cam1["write_rate_bytes_per_second"] == 8 * KIB

    table = format_stats(snap, cfg, as_json=False)
    assert "8.0 MiB" in table and "37.5% used" in table
    assert "1.5 MiB" in table  # each camera's bytes
    assert "8.0 KiB/s" in table and "16.0 KiB/s" in table
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0)) in table
    assert "days fit below the threshold" in table
    cam_line = next(line for line in table.splitlines() if line.startswith("cam1"))
    assert cam_line.split()[1] == "3" and "7.0 d" in cam_line


def test_format_report_lists_files_and_totals(tmp_path: Path) -> None:
    files = aged(tmp_path)
    storage = Storage(config(tmp_path, {"cleanup_days": 3}), clock=lambda: NOW)
    storage.scan()

    dry = format_report(storage.run_pass("manual", dry_run=True), dry_run=True)
    assert f"would delete {files['cam1'][0]} (max_age, 10 B, 10 bytes)" in dry
    assert f"would delete {files['cam2'][0]}" in dry
    assert "camera cam1: 1 files, 10 bytes" in dry
    assert "total: 2 files, 20 bytes (20 B) would delete" in dry

    real = format_report(storage.run_pass("manual"), dry_run=False)
    assert f"deleted {files['cam1'][0]} (max_age" in real
    assert "total: 2 files, 20 bytes (20 B) deleted" in real
