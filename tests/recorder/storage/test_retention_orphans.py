"""Footage of cameras no longer in the configuration (issue 19): indexed, aged, reclaimed first, never more.

On real files, the disk-pressure cases on a real 8 MiB tmpfs, so statvfs and every byte freed are the kernel's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import mounted_tmpfs

from recorder.config import Config, parse_config
from recorder.footage.segments import parse_segment_name, segment_file_name
from recorder.storage.facade import Storage

KIB = 1024
MIB = 1024 * KIB
SEG = 512 * KIB  # whole pages: tmpfs usage is the sum of the files
STEP = 64
T0 = parse_segment_name("cam1_20240301_120000.mkv").start  # type: ignore[union-attr]
NOW = T0 + 40 * STEP
DAY = 86400.0


def write(base: Path, folder: str, start: float, size: int = SEG, camera: str | None = None) -> Path:
    path = base / folder / segment_file_name(camera or folder, start)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


def config(base: Path, storage: dict[str, Any] | None = None, cameras: tuple[str, ...] = ("cam1", "cam2")) -> Config:
    return parse_config(
        {
            "cameras": {cam: {"test_pattern": True} for cam in cameras},
            "recording": {"base_directory": str(base), "segment_time": STEP},
            "storage": {"min_free_minutes": 0.01, **(storage or {})},
        }
    )


def used(path: Path) -> float:
    st = os.statvfs(path)
    return 1 - st.f_bavail / st.f_blocks


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "fs", "8m") as mnt:
        yield mnt


PRESSURE = {"disk_usage_threshold": 70, "low_space_warning": 50, "pressure_target": 55}


def test_pressure_takes_the_removed_cameras_oldest_files_first_and_no_configured_footage(tmpfs: Path) -> None:
    # A removed camera's folder fills half the disk (8 x 512 KiB = 4 MiB of 8), with footage *newer* than the
    # configured cameras' (2 MiB): pressure at 75 % must still take the orphan's, oldest first.
    configured = [write(tmpfs, "cam1", T0 + i * STEP) for i in range(2)]
    configured += [write(tmpfs, "cam2", T0 + i * STEP + 1) for i in range(2)]
    orphan = [write(tmpfs, "gone", T0 + (10 + i) * STEP) for i in range(8)]
    assert 0.74 < used(tmpfs) < 0.76
    storage = Storage(config(tmpfs, PRESSURE), clock=lambda: NOW)
    storage.scan()
    assert storage.snapshot().orphans["gone"].files == 8
    assert storage.snapshot().orphans["gone"].bytes == 8 * SEG

    report = storage.run_pass("disk_pressure")

    # 75 % -> 55 % needs 1.6 MiB: the orphan's four oldest.
    assert [report.path(f) for f in report.files] == orphan[:4]
    assert all(p.exists() for p in configured + orphan[4:])
    assert used(tmpfs) <= 0.55
    snap = storage.snapshot()
    assert snap.orphans["gone"].files == 4 and snap.orphans["gone"].oldest_start == T0 + 14 * STEP
    assert snap.orphaned_deleted_files["disk_pressure"] == 4
    assert snap.orphaned_deleted_bytes["disk_pressure"] == 4 * SEG
    assert all(snap.deleted_files[(cam, "disk_pressure")] == 0 for cam in ("cam1", "cam2"))
    assert report.orphans == {"gone"}


def test_configured_footage_goes_only_once_no_orphan_footage_is_left(tmpfs: Path) -> None:
    configured = [write(tmpfs, "cam1", T0 + i * STEP) for i in range(10)]  # 5 MiB, the oldest
    orphan = [write(tmpfs, "gone", T0 + (20 + i) * STEP) for i in range(2)]  # 1 MiB
    storage = Storage(config(tmpfs, PRESSURE), clock=lambda: NOW)
    storage.scan()

    report = storage.run_pass("disk_pressure")

    deleted = [report.path(f) for f in report.files]
    # 75 % -> 55 %: four files, both of the orphan's, then cam1's two oldest.
    assert deleted == [*orphan, *configured[:2]]
    assert all(p.exists() for p in configured[2:])
    assert "gone" not in storage.snapshot().orphans  # nothing left of it: no camera any more


def test_the_orphans_newest_segment_is_spared_while_it_may_still_be_written(tmpfs: Path) -> None:
    # Renamed a moment ago: the old FFmpeg may still be finishing its last segment, as for any camera.
    configured = [write(tmpfs, "cam1", T0 + i * STEP) for i in range(10)]
    orphan = [write(tmpfs, "gone", NOW - STEP * (1 - i)) for i in range(2)]
    storage = Storage(config(tmpfs, PRESSURE), clock=lambda: NOW)
    storage.scan()

    report = storage.run_pass("disk_pressure")

    assert [report.path(f) for f in report.files] == [orphan[0], *configured[:3]]
    assert orphan[1].exists()


def test_orphans_age_by_the_storage_sections_cleanup_days(tmp_path: Path) -> None:
    old, young = NOW - 20 * DAY, NOW - 5 * DAY
    # cam1 keeps 30 days by its own cleanup_days; the removed camera goes by the storage section's 10.
    kept = [write(tmp_path, "cam1", old), write(tmp_path, "gone", young)]
    aged = write(tmp_path, "gone", old)
    cfg = parse_config(
        {
            "cameras": {"cam1": {"test_pattern": True, "cleanup_days": 30}},
            "recording": {"base_directory": str(tmp_path), "segment_time": STEP},
            "storage": {"cleanup_days": 10},
        }
    )
    storage = Storage(cfg, clock=lambda: NOW)
    storage.scan()
    assert storage.snapshot().orphans["gone"].max_age_seconds == 10 * DAY
    assert storage.snapshot().orphans["gone"].configured is False

    report = storage.run_pass("schedule")

    assert [report.path(f) for f in report.files] == [aged]
    assert {f.reason for f in report.files} == {"max_age"}
    assert all(p.exists() for p in kept)
    assert storage.snapshot().orphaned_deleted_files["max_age"] == 1


def test_with_cleanup_disabled_orphans_are_not_aged(tmp_path: Path) -> None:
    aged = write(tmp_path, "gone", NOW - 400 * DAY)
    storage = Storage(config(tmp_path, {"cleanup_enabled": False}), clock=lambda: NOW)
    storage.scan()
    assert storage.snapshot().orphans["gone"].max_age_seconds is None

    assert storage.run_pass("schedule").file_count == 0
    assert aged.exists()


def test_what_is_not_the_recorders_is_never_indexed_nor_touched(tmp_path: Path, caplog: Any) -> None:
    base = tmp_path / "rec"
    base.mkdir()
    old = NOW - 400 * DAY
    outside = tmp_path / "outside"
    outside.mkdir()
    survivors = [
        base / "lost+found" / segment_file_name("lost+found", old),  # cannot be a camera id
        base / "lost+found" / "#1234",
        base / "clips" / "birthday.mkv",  # .mkv but no segment name
        base / "clips" / "clips_2024.mkv",
        base / "clips" / (segment_file_name("clips", old) + ".part"),
        base / "archive" / segment_file_name("cam1", old),  # another camera's segments, copied aside
        base / "kamera-ü" / segment_file_name("kamera", old),  # odd characters: never a camera folder
        base / ".transcoding" / segment_file_name("transcoding", old),
        base / "stray" / "sub" / segment_file_name("stray", old),  # one level down is not its folder
        base / segment_file_name("loose", old),  # a segment name right under base
        base / "notes.txt",
        outside / segment_file_name("linked", old),
    ]
    for p in survivors:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (base / "linked").symlink_to(outside, target_is_directory=True)  # a symlink named like a camera
    (base / "stray" / segment_file_name("stray", old + 1)).symlink_to(outside / segment_file_name("linked", old))
    (base / "dirlike").mkdir()
    (base / "dirlike" / segment_file_name("dirlike", old)).mkdir()  # a folder named like a segment
    odd = write(base, "cam-2_b", old, 10)  # an odd but valid camera id
    storage = Storage(config(base, {"cleanup_days": 30}), clock=lambda: NOW)
    with caplog.at_level(logging.INFO, logger="recorder.storage"):
        storage.scan()

    assert sorted(storage.snapshot().orphans) == ["cam-2_b"]
    assert any("linked is a symlink" in r.getMessage() for r in caplog.records)
    report = storage.run_pass("manual")

    assert [report.path(f) for f in report.files] == [odd]
    assert all(p.exists() for p in survivors)
    assert (base / "linked").is_symlink() and (base / "stray" / segment_file_name("stray", old + 1)).is_symlink()
    assert (base / "dirlike" / segment_file_name("dirlike", old)).is_dir()


def test_an_orphan_folder_swapped_for_a_symlink_after_the_scan_is_not_entered(tmp_path: Path) -> None:
    paths = [write(tmp_path, "gone", NOW - 40 * DAY + i, 10) for i in range(3)]
    storage = Storage(config(tmp_path, {"cleanup_days": 30}), clock=lambda: NOW)
    storage.scan()
    assert storage.snapshot().orphans["gone"].files == 3
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "gone").rename(elsewhere)
    (tmp_path / "gone").symlink_to(elsewhere, target_is_directory=True)

    assert storage.run_pass("schedule").file_count == 0
    assert all((elsewhere / p.name).exists() for p in paths)
    storage.resync()
    assert "gone" not in storage.snapshot().orphans


def test_an_orphan_folder_appearing_later_is_found_by_the_next_resync(tmp_path: Path, caplog: Any) -> None:
    write(tmp_path, "cam1", NOW - STEP)
    storage = Storage(config(tmp_path), clock=lambda: NOW)
    storage.scan()
    assert not storage.snapshot().orphans
    write(tmp_path, "gone", NOW - 3 * STEP)
    write(tmp_path, "gone", NOW - 2 * STEP)

    with caplog.at_level(logging.WARNING, logger="recorder.storage"):
        storage.resync()

    snap = storage.snapshot()
    assert snap.orphans["gone"].files == 2 and snap.orphans["gone"].bytes == 2 * SEG
    assert snap.orphans["gone"].write_rate_bytes_per_second == 0.0  # nobody records there
    assert snap.files == 1 and snap.orphaned_files == 2  # the configured totals stay the configured cameras'
    assert any("camera gone is not in the configuration" in r.getMessage() for r in caplog.records)
    # The orphan's footage is space retention may free: it counts in what the recorder may use.
    assert snap.capacity_seconds is None or snap.capacity_seconds > 0


def test_a_renamed_camera_leaves_its_old_folder_to_retention(tmp_path: Path) -> None:
    old = [write(tmp_path, "porch", NOW - 40 * DAY + i * STEP, 10) for i in range(3)]
    before = Storage(config(tmp_path, {"cleanup_days": 30}, cameras=("porch",)), clock=lambda: NOW)
    before.scan()
    assert before.snapshot().cameras["porch"].files == 3 and not before.snapshot().orphans

    # The config now calls it front_door: what a reload builds.
    after = Storage(config(tmp_path, {"cleanup_days": 30}, cameras=("front_door",)), clock=lambda: NOW)
    after.scan()
    snap = after.snapshot()
    assert list(snap.cameras) == ["front_door"] and snap.orphans["porch"].files == 3
    report = after.run_pass("schedule")
    assert [report.path(f) for f in report.files] == old
    assert not any(p.exists() for p in old)


def test_stats_and_cleanup_show_the_orphans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import time

    import yaml

    from recorder.app.cli import main

    base = tmp_path / "rec"
    now = time.time()
    write(base, "cam1", now - 2 * DAY, 1000)
    aged = write(base, "gone", now - 40 * DAY, 3000)
    young = write(base, "gone", now - 1 * DAY, 2000)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "cameras": {"cam1": {"test_pattern": True}},
                "recording": {"base_directory": str(base)},
                "storage": {"cleanup_days": 30},
            }
        )
    )

    assert main(["-c", str(cfg), "--stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    rows = {c["camera"]: (c["configured"], c["files"], c["bytes"]) for c in stats["cameras"]}
    assert rows == {"cam1": (True, 1, 1000), "gone": (False, 2, 5000)}
    assert stats["total"]["files"] == 3 and stats["total"]["bytes"] == 6000
    assert stats["orphaned"]["folders"] == 1 and stats["orphaned"]["max_age_seconds"] == 30 * DAY
    assert main(["-c", str(cfg), "--stats"]) == 0
    table = capsys.readouterr().out
    line = next(line for line in table.splitlines() if line.startswith("gone"))
    assert "(not configured)" in line and line.split()[3] == "2" and "30.0 d" in line
    assert "1 folder(s) of cameras not in the configuration" in table
    assert aged.exists(), "--stats only looks"

    assert main(["-c", str(cfg), "--cleanup"]) == 0
    out = capsys.readouterr().out
    assert f"deleted {aged} (max_age" in out and "camera gone (not configured): 1 files, 3000 bytes" in out
    assert not aged.exists() and young.exists()


def test_a_free_space_alert_also_takes_the_orphans_footage_first(tmpfs: Path) -> None:
    configured = [write(tmpfs, "cam1", T0 + i * STEP) for i in range(6)]  # the oldest, 3 MiB
    orphan = [write(tmpfs, "gone", T0 + (20 + i) * STEP) for i in range(6)]  # 3 MiB: 75 % used in all
    # The pressure target under the warning: the alert frees below the warning (never below the target).
    storage = Storage(config(tmpfs, {**PRESSURE, "pressure_target": 45}), clock=lambda: NOW)
    storage.scan()

    report = storage.run_pass("alert", action="free_space")

    # Below the 50 % low-space warning: 2 MiB and a byte, five files, every one of them the orphan's.
    assert [report.path(f) for f in report.files] == orphan[:5]
    assert {f.reason for f in report.files} == {"alert"}
    assert all(p.exists() for p in configured)
    assert storage.snapshot().orphaned_deleted_files["alert"] == 5
