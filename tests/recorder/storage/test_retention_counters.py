"""Retention's counters go on across a reload that rebuilds the accounting: passes and deletions never read
less; a camera the reload removed keeps its counts unexposed and gets them back when it is added again."""

from __future__ import annotations

from pathlib import Path

from conftest import small_config

from recorder.storage.facade import Storage
from recorder.storage.retention.accounting import RetentionCounters
from recorder.storage.retention.model import DeletedFile


def deleted(camera: str, size: int = 100) -> DeletedFile:
    return DeletedFile(camera, f"{camera}_20260101_000000.mkv", "max_age", size, 0.0)


def test_counts_carry_over_and_a_removed_cameras_come_back_with_it() -> None:
    first = RetentionCounters(["cam1", "cam2"])
    first.count_deleted([deleted("cam1"), deleted("cam2"), deleted("cam2")])
    first.count_run("schedule", 10.0)
    without_cam2 = RetentionCounters(["cam1"])
    without_cam2.carry_from(first)
    assert without_cam2.deleted_files[("cam1", "max_age")] == 1
    assert ("cam2", "max_age") not in without_cam2.deleted_files  # its series end with the camera
    assert without_cam2.runs["schedule"] == 1 and without_cam2.last_run == 10.0
    without_cam2.count_deleted([deleted("cam1")])
    back = RetentionCounters(["cam1", "cam2"])
    back.carry_from(without_cam2)
    assert back.deleted_files[("cam1", "max_age")] == 2
    assert back.deleted_files[("cam2", "max_age")] == 2 and back.deleted_bytes[("cam2", "max_age")] == 200


def test_a_rebuilt_storage_goes_on_from_the_one_it_replaces(tmp_path: Path) -> None:
    config = small_config(tmp_path / "rec")
    old = Storage(config)
    old.scan()
    old.run_pass("schedule")
    old.run_pass("manual")
    new = Storage(config)
    new.scan()
    new.carry_counters_from(old)
    runs = new.snapshot().runs
    assert runs["schedule"] == 1 and runs["manual"] == 1
    new.run_pass("schedule")
    assert new.snapshot().runs["schedule"] == 2


def test_counted_while_the_replaced_accounting_stops_is_carried_once() -> None:
    old = RetentionCounters(["cam1"])
    old.count_run("schedule", 1.0)
    new = RetentionCounters(["cam1"])
    new.carry_from(old)
    baseline = old.copy()
    old.count_run("schedule", 2.0)  # the pass the old worker finished while stopping
    old.count_deleted([deleted("cam1")])
    new.carry_from(old, since=baseline)
    assert new.runs["schedule"] == 2 and new.deleted_files[("cam1", "max_age")] == 1 and new.last_run == 2.0
