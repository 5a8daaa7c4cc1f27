"""The write probe on a real filesystem: probes running at once never trip over each other's file."""

from __future__ import annotations

import threading
from pathlib import Path

from conftest import small_config

from recorder.footage.segments import folder_names, parse_segment_name, segment_file_name
from recorder.footage.write_probe import (
    PROBE_NAME,
    camera_folder_problem,
    is_probe_name,
    probe_folder,
    unique_probe_name,
)
from recorder.storage.facade import Storage

ROUNDS = 1500


def test_the_storage_worker_and_a_supervisor_probing_at_once_both_succeed(tmpfs: Path) -> None:
    """Both create and unlink a file in <cam>/: with one shared name, one unlink removed the other's file
    and the other's unlink failed (ENOENT), a false storage_writable 0."""
    storage = Storage(small_config(tmpfs))
    folder = tmpfs / "cam1"
    folder.mkdir()
    failures: list[str] = []
    start = threading.Barrier(3)

    def storage_worker() -> None:
        start.wait()
        for _ in range(ROUNDS):
            storage.refresh_filesystem()
            if storage.snapshot().writable is not True:
                failures.append("storage probe")

    def supervisor_probe() -> None:
        start.wait()
        for _ in range(ROUNDS):
            error = camera_folder_problem(folder)
            if error is not None:
                failures.append(f"supervisor probe: {error}")

    def another_probe() -> None:
        start.wait()
        for _ in range(ROUNDS):
            error = probe_folder(folder)
            if error is not None:
                failures.append(f"probe: {error}")

    threads = [threading.Thread(target=t) for t in (storage_worker, supervisor_probe, another_probe)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert not list(tmpfs.rglob(PROBE_NAME + "*")), "every probe removed its own file"


def test_every_probe_name_is_its_own_and_ignored_by_the_scanners(tmpfs: Path) -> None:
    names = {unique_probe_name() for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.startswith(PROBE_NAME) and is_probe_name(name)
        assert parse_segment_name(name) is None
    # A probe file left by a crash between create and unlink: neither the storage index nor the
    # supervisor's no-overwrite listing takes it for a segment.
    folder = tmpfs / "cam1"
    folder.mkdir()
    segment = folder / segment_file_name("cam1", 1_700_000_000)
    segment.write_bytes(b"\0" * 1000)
    (folder / unique_probe_name()).write_bytes(b"left over")
    storage = Storage(small_config(tmpfs))
    storage.scan()
    assert storage.snapshot().cameras["cam1"].files == 1
    assert folder_names(folder, "cam1").newest_start == 1_700_000_000
