"""A camera folder that is a mount point and goes away (`umount -l`) or comes back: the index follows it at
the next check, so the metrics say what the disk holds, not what the mount held (root: real mounts)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import segment_file, small_config, wait_for
from daemon_harness import Daemon, write_config

from recorder.footage.segments import parse_segment_name
from recorder.storage.facade import Storage

MIB = 1 << 20


def segments_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if parse_segment_name(p.name)]


@contextmanager
def camera_mount(where: Path) -> Iterator[Path]:
    """A tmpfs mounted on a camera folder; the test unmounts it, and whatever is still mounted goes at the end."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        while subprocess.run(["mountpoint", "-q", str(where)], check=False).returncode == 0:
            subprocess.run(["umount", "-l", str(where)], check=True)


def indexed(daemon: Daemon) -> float:
    return daemon.value("camera_recorder_recordings_files", camera="cam1") or 0


def test_the_index_follows_a_camera_folder_unmounted_at_the_next_check(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    underneath = [segment_file(base, "cam1", 3600 * (20 - i), MIB // 4) for i in range(2)]  # hidden by the mount
    with camera_mount(base / "cam1") as mount:
        [segment_file(base, "cam1", 3600 * (10 - i), MIB // 4) for i in range(5)]
        storage = Storage(small_config(base))
        storage.scan()
        assert storage.snapshot().cameras["cam1"].files == 5
        subprocess.run(["umount", "-l", str(mount)], check=True)
        storage.check()
        assert storage.snapshot().cameras["cam1"].files == 2
        assert sorted(segments_in(base / "cam1")) == sorted(underneath)
        # And back: mounted again (empty), the next check indexes what the new mount holds.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
        storage.check()
        assert storage.snapshot().cameras["cam1"].files == 0


def test_a_daemon_whose_camera_mount_vanishes_reports_what_the_disk_holds(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    with camera_mount(base / "cam1") as mount:
        for i in range(6):
            segment_file(base, "cam1", 3600 * (10 - i), MIB // 4)
        config = write_config(
            tmp_path / "config.yaml", base,
            cameras={"cam1": {"test_pattern": True, "resolution": "160x120", "framerate": 25}},
            storage={"check_interval": 1},
        )  # fmt: skip
        daemon = Daemon(config)
        try:
            wait_for(lambda: indexed(daemon) >= 7, timeout=30, what="the planted segments and a recorded one indexed")
            subprocess.run(["umount", "-l", str(mount)], check=True)

            def indexed_matches_disk() -> bool:
                on_disk = len(segments_in(base / "cam1"))
                now = indexed(daemon)
                return now < 6 and on_disk - 1 <= now <= on_disk  # the open segment is not indexed yet

            wait_for(indexed_matches_disk, timeout=20, what="the index to follow the vanished mount")
            assert "indexing it again" in daemon.log()
        finally:
            assert daemon.stop() == 0


def test_a_camera_folder_created_after_the_scan_is_no_moved_mount(tmp_path: Path) -> None:
    from recorder.storage.retention.scan import folders_moved

    base = tmp_path / "rec"
    storage = Storage(small_config(base))
    storage.scan()  # cam1's folder does not exist yet: FFmpeg makes it with its first segment
    (base / "cam1").mkdir(parents=True)
    assert folders_moved(storage._state) == []
