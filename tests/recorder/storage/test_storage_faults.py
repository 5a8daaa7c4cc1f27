"""Storage under stress (issue 10), each case with the real daemon, real FFmpeg and real mounts (root).

Every scenario of the issue's "What goes wrong today" list is a test here: a small disk with a large
`min_free_minutes`, a disk filled by another program (curable by retention, and not), a folder turned
read-only while recording, a folder unwritable at start, empty files, and the validation holes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mounted_tmpfs, probe, segment_file, wait_for
from daemon_harness import Daemon, write_config
from transcoding_support import make_segment

from recorder.config import ConfigError, parse_config
from recorder.daemon.preflight import run_checks
from recorder.footage.segments import parse_segment_name

MIB = 1024 * 1024
CAM = "cam1"
ONE_CAMERA = {CAM: {"test_pattern": True, "resolution": "160x120", "framerate": 25}}


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`mount --bind -o ro DIR DIR`: the folder refuses writes (EROFS) until the context ends."""
    subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextlib.contextmanager
def immutable(folder: Path) -> Iterator[None]:
    """`chattr +i`: creating files fails with EPERM, even for root, until the context ends."""
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


UNWRITABLE = {"read_only_mount": read_only, "immutable_eperm": immutable}


def fill_disk(path: Path) -> int:
    """Write `path` until the filesystem says ENOSPC, like another program would; its final size."""
    written = 0
    with path.open("wb") as f:
        chunk = b"\xa5" * 65536
        while True:
            try:
                written += f.write(chunk)
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return path.stat().st_size


def state(daemon: Daemon, camera: str = CAM) -> str | None:
    for (name, labels), value in daemon.samples().items():
        if name == "camera_recorder_camera_state" and value == 1 and ("camera", camera) in labels:
            return dict(labels)["state"]
    return None


def counter(daemon: Daemon, name: str, **labels: str) -> float:
    return daemon.value(name, **labels) or 0.0


def restarts(daemon: Daemon) -> float:
    """FFmpeg restarts of every reason and camera."""
    return sum(v for (n, _), v in daemon.samples().items() if n == "camera_recorder_ffmpeg_restarts_total")


def segments_on_disk(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if parse_segment_name(p.name))


@contextlib.contextmanager
def one_page_free(tmp_path: Path) -> Iterator[tuple[Path, Path, Daemon]]:
    """A 4 MB tmpfs filled by a foreign file but for one page: FFmpeg can write a header, not a frame."""
    with mounted_tmpfs(tmp_path / "fs", "4m") as fs:
        ballast = fs / "foreign.bin"
        fill_disk(ballast)
        os.truncate(ballast, ballast.stat().st_size - 4096)
        yield fs, ballast, start_daemon(tmp_path, fs, storage={"check_interval": 60, "min_free_minutes": 0})


def start_daemon(tmp_path: Path, base: Path, **sections: object) -> Daemon:
    sections.setdefault("cameras", ONE_CAMERA)
    return Daemon(write_config(tmp_path / "config.yaml", base, **sections))


# -- 1. min_free_minutes on a small disk ----------------------------------------------------------------


def test_min_free_minutes_larger_than_the_disk_deletes_nothing_below_the_target(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "fs", "16m") as fs:
        # About half the disk of old footage; 60 min at the camera's rate is far more than 16 MiB.
        old = [segment_file(fs, CAM, 3600 * (10 - i), MIB) for i in range(8)]
        for round_ in range(2):  # the restarted daemon's first pass must not delete either
            daemon = start_daemon(tmp_path, fs, storage={"check_interval": 0.5})
            try:
                wait_for(lambda d=daemon: counter(d, "camera_recorder_segments_completed_total", camera=CAM) >= 2)
                wait_for(
                    lambda d=daemon: (
                        counter(d, "camera_recorder_retention_runs_total", path=str(fs), trigger="schedule") >= 3
                    ),
                    what="three scheduled checks",
                )
                assert daemon.value("camera_recorder_retention_min_free_unmet", path=str(fs)) == 1.0
                deleted = counter(
                    daemon, "camera_recorder_retention_deleted_files_total", camera=CAM, reason="disk_pressure"
                )
                assert deleted == 0, f"round {round_}: {deleted} segments deleted below the threshold"
            finally:
                daemon.stop()
            log = daemon.log()
            assert log.count("footage is kept") == 1, log
        assert all(p.exists() for p in old)


def test_min_free_minutes_zero_is_accepted_and_switches_the_wish_off(tmp_path: Path) -> None:
    config = parse_config(
        {"cameras": ONE_CAMERA, "recording": {"base_directory": str(tmp_path)}, "storage": {"min_free_minutes": 0}}
    )
    assert config.storage.min_free_minutes == 0


# -- 2. ENOSPC from a foreign fill ---------------------------------------------------------------------


def test_a_foreign_fill_is_disk_full_and_retention_frees_space_at_once(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "fs", "16m") as fs:
        old = [segment_file(fs, CAM, 3600 * (10 - i), MIB) for i in range(6)]
        # check_interval 60: only the ENOSPC (and segment completion) may start the pass.
        daemon = start_daemon(tmp_path, fs, storage={"check_interval": 60, "min_free_minutes": 0})
        try:
            wait_for(lambda: state(daemon) == "recording", what="recording")
            wait_for(lambda: counter(daemon, "camera_recorder_segments_completed_total", camera=CAM) >= 1)
            ballast = fs / "foreign.bin"
            size = fill_disk(ballast)
            filled_at = time.monotonic()
            wait_for(
                lambda: counter(daemon, "camera_recorder_ffmpeg_restarts_total", camera=CAM, reason="disk_full") >= 1,
                what="a disk_full restart",
            )
            completed = counter(daemon, "camera_recorder_segments_completed_total", camera=CAM)
            wait_for(
                lambda: counter(daemon, "camera_recorder_segments_completed_total", camera=CAM) > completed,
                timeout=20,
                what="a new segment after the fill",
            )
            resumed = time.monotonic() - filled_at
            deleted = counter(
                daemon, "camera_recorder_retention_deleted_files_total", camera=CAM, reason="disk_pressure"
            )
            assert deleted >= 1
            assert sum(not p.exists() for p in old) == deleted
            assert ballast.stat().st_size == size, "the foreign file was touched"
            assert counter(daemon, "camera_recorder_ffmpeg_restarts_total", camera=CAM, reason="crashed") == 0
            # Not a figure (see bench/bench_storage_faults.py), a bound: far from the old 60 s outage.
            assert resumed < 15, f"recording resumed {resumed:.1f} s after the fill"
            # The gauges follow the pass, not the next scheduled check 60 s later.
            avail = daemon.value("camera_recorder_filesystem_avail_bytes", path=str(fs))
            assert avail is not None and avail > 0
        finally:
            daemon.stop()


# -- 2c. an own fill at full speed --------------------------------------------------------------------


def test_an_own_fill_at_46_mbit_never_reaches_enospc(tmp_path: Path) -> None:
    """46 Mbit/s into 64 MB with 2 s segments fills the disk in 11 s: the pressure check keeps ahead of it."""
    clip = tmp_path / "clip.mkv"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-vf", "noise=alls=40:allf=t", "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
         "-b:v", "42M", "-maxrate", "46M", "-bufsize", "46M", "-pix_fmt", "yuv420p", str(clip)],
        check=True,
    )  # fmt: skip
    assert clip.stat().st_size * 8 / 4 > 40e6, "the clip is not the bit rate the case is about"
    with mounted_tmpfs(tmp_path / "fs", "64000k") as fs:
        # check_interval 60: the fill is noticed at segment completions and on the time-to-full schedule.
        daemon = start_daemon(tmp_path, fs, cameras={CAM: {"file": str(clip)}}, storage={"check_interval": 60})
        try:
            # Two and a half fills of the disk.
            wait_for(
                lambda: counter(daemon, "camera_recorder_written_bytes_total", camera=CAM) > 160e6,
                timeout=60,
                what="160 MB written",
            )
            assert counter(daemon, "camera_recorder_ffmpeg_restarts_total", camera=CAM, reason="disk_full") == 0
            assert restarts(daemon) == 0
            assert counter(daemon, "camera_recorder_retention_deleted_files_total", camera=CAM, reason="disk_pressure")
        finally:
            daemon.stop()
        assert "No space left" not in daemon.log()


# -- 2b and 5. ENOSPC that retention cannot cure; empty files --------------------------------------------


def test_a_full_disk_without_own_footage_is_storage_error_and_leaves_no_empty_segment(tmp_path: Path) -> None:
    with one_page_free(tmp_path) as (fs, ballast, daemon):
        try:
            wait_for(lambda: state(daemon) == "storage_error", timeout=20, what="storage_error")
            assert daemon.value("camera_recorder_storage_writable", path=str(fs)) == 0.0
            assert counter(daemon, "camera_recorder_segments_completed_total", camera=CAM) == 0
            assert daemon.value("camera_recorder_recordings_files", camera=CAM) == 0.0
            folder = fs / CAM
            leftovers = [p for p in segments_on_disk(folder) if not probe(p)["frames"]] if folder.exists() else []
            assert leftovers == [], "files without a frame were left behind"
            # The camera stays put rather than crash-looping: no restarts while in storage_error.
            before = restarts(daemon)
            wait_for(lambda: daemon.value("camera_recorder_recording_gap_seconds_total", camera=CAM) > 3)
            assert restarts(daemon) == before

            ballast.unlink()
            wait_for(lambda: state(daemon) == "recording", timeout=10, what="recording after space returned")
            wait_for(lambda: daemon.value("camera_recorder_storage_writable", path=str(fs)) == 1.0, timeout=5)
        finally:
            daemon.stop()
        assert "Traceback" not in daemon.log()


def test_a_header_only_segment_from_a_start_into_a_full_disk_is_discarded_as_empty(tmp_path: Path) -> None:
    with one_page_free(tmp_path) as (_fs, _ballast, daemon):
        try:
            wait_for(lambda: state(daemon) == "storage_error", timeout=20, what="storage_error")

            def discarded() -> float:
                return sum(
                    counter(daemon, "camera_recorder_segments_discarded_total", camera=CAM, reason=r)
                    for r in ("empty", "unreadable")
                )

            # FFmpeg lists the header-only file as a completed segment: removed and counted, never completed.
            # The count may follow the state change (FFmpeg's exit is read after the probe refused writes).
            wait_for(lambda: discarded() >= 1, timeout=10, what="the header-only segment discarded")
            assert discarded() == daemon.log().count("segment cam1_")
            assert counter(daemon, "camera_recorder_segments_completed_total", camera=CAM) == 0
        finally:
            daemon.stop()


# -- 3. read-only while recording ----------------------------------------------------------------------


@pytest.mark.parametrize("how", sorted(UNWRITABLE))
def test_a_folder_turned_unwritable_is_storage_error_at_once_and_heals_by_itself(tmp_path: Path, how: str) -> None:
    with mounted_tmpfs(tmp_path / "fs", "16m") as fs:
        daemon = start_daemon(tmp_path, fs, storage={"check_interval": 60})
        try:
            wait_for(lambda: counter(daemon, "camera_recorder_segments_completed_total", camera=CAM) >= 1)
            with UNWRITABLE[how](fs / CAM):
                # FFmpeg fails at the next segment (2 s); the state and the gauge follow at once.
                wait_for(lambda: state(daemon) == "storage_error", timeout=10, what="storage_error")
                assert daemon.value("camera_recorder_storage_writable", path=str(fs)) == 0.0
                crashed = counter(daemon, "camera_recorder_ffmpeg_restarts_total", camera=CAM, reason="crashed")
            writable_at = time.monotonic()
            wait_for(lambda: state(daemon) == "recording", timeout=10, what="recording again")
            assert time.monotonic() - writable_at < 5
            assert daemon.value("camera_recorder_storage_writable", path=str(fs)) == 1.0
            # While unwritable it did not crash-loop.
            assert counter(daemon, "camera_recorder_ffmpeg_restarts_total", camera=CAM, reason="crashed") == crashed
            done = counter(daemon, "camera_recorder_segments_completed_total", camera=CAM)
            wait_for(lambda: counter(daemon, "camera_recorder_segments_completed_total", camera=CAM) > done)
        finally:
            daemon.stop()


# -- 4. unwritable at start ----------------------------------------------------------------------------


def test_an_unwritable_folder_at_start_waits_in_storage_error_and_records_once_writable(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "fs", "16m") as fs:
        (fs / CAM).mkdir()
        with read_only(fs / CAM):
            daemon = start_daemon(tmp_path, fs, storage={"check_interval": 60})
            try:
                wait_for(lambda: state(daemon) == "storage_error", timeout=10, what="storage_error")
                wait_for(lambda: daemon.value("camera_recorder_storage_writable", path=str(fs)) == 0.0, timeout=5)
                assert daemon.get("/-/healthy")[0] == 200
            except BaseException:
                daemon.stop()
                raise
        try:
            wait_for(lambda: state(daemon) == "recording", timeout=10, what="recording once writable")
            wait_for(lambda: daemon.value("camera_recorder_storage_writable", path=str(fs)) == 1.0, timeout=5)
        finally:
            daemon.stop()
        log = daemon.log()
        assert "Traceback" not in log
        assert "Read-only file system" in log


def test_a_recordings_folder_that_cannot_be_created_at_start_keeps_the_daemon_up(tmp_path: Path) -> None:
    """Issue 21: base_directory missing under a read-only parent used to exit 1 at start, which the unit's
    Restart=always turned into a restart every 2 s. The daemon now stays up, every camera in storage_error
    with storage_writable 0 (both alerted on), and records once the folder can be made."""
    with mounted_tmpfs(tmp_path / "fs", "16m") as fs:
        parent = fs / "storage"
        parent.mkdir()
        base = parent / "recordings"
        with read_only(parent):
            daemon = start_daemon(tmp_path, base, storage={"check_interval": 60})
            try:
                wait_for(lambda: state(daemon) == "storage_error", timeout=10, what="storage_error")
                wait_for(lambda: daemon.value("camera_recorder_storage_writable", path=str(base)) == 0.0, timeout=5)
                assert daemon.proc.poll() is None
                assert daemon.get("/-/healthy")[0] == 200
                line = f"recording.base_directory: cannot create {base}: Read-only file system; every camera waits"
                assert line in daemon.log()
                assert "ReadWritePaths=" in daemon.log()
            except BaseException:
                daemon.stop()
                raise
        try:
            wait_for(lambda: state(daemon) == "recording", timeout=10, what="recording once the folder can be made")
            wait_for(lambda: daemon.value("camera_recorder_storage_writable", path=str(base)) == 1.0, timeout=5)
        finally:
            assert daemon.stop() == 0
        assert "Traceback" not in daemon.log()


# -- 6. validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("camera_id", ["cam1\n", "cam1\r\n", "cam 1", "../cam1", ""])
def test_camera_ids_are_matched_whole(tmp_path: Path, camera_id: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"cameras": {camera_id: {"test_pattern": True}}, "recording": {"base_directory": str(tmp_path)}})
    assert "camera id" in str(caught.value)


@pytest.mark.parametrize("base", ["/", "//", "/etc", "/usr/", "/var/lib", "/proc", "/home/.."])
def test_a_system_folder_as_base_directory_is_refused_with_one_line(base: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"cameras": ONE_CAMERA, "recording": {"base_directory": base}})
    lines = [line for line in str(caught.value).splitlines() if "base_directory" in line]
    assert len(lines) == 1 and "system folder" in lines[0]


def test_an_ordinary_base_directory_is_accepted() -> None:
    for base in ("/storage/recordings", "/var/lib/camera-recorder", "/home/cams", "recordings"):
        parse_config({"cameras": ONE_CAMERA, "recording": {"base_directory": base}})


def test_a_symlinked_camera_folder_is_refused_and_nothing_is_written_through_it(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "fs", "16m") as fs:
        elsewhere = fs / "elsewhere"
        elsewhere.mkdir()
        (fs / CAM).symlink_to(elsewhere)
        daemon = start_daemon(tmp_path, fs, storage={"check_interval": 60})
        try:
            wait_for(lambda: state(daemon) == "storage_error", timeout=10, what="storage_error")
            wait_for(lambda: daemon.value("camera_recorder_storage_writable", path=str(fs)) == 0.0, timeout=5)
            assert list(elsewhere.iterdir()) == []
        finally:
            daemon.stop()
        assert "symlink" in daemon.log()


def test_validate_names_a_symlinked_camera_folder(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    base.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (base / CAM).symlink_to(tmp_path / "elsewhere")
    config = parse_config({"cameras": ONE_CAMERA, "recording": {"base_directory": str(base)}})
    problems, _ = run_checks(config)
    assert [p for p in problems if "symlink" in p] == [
        f"cameras.{CAM}: {base / CAM} is a symlink; camera folders must be real folders "
        "(point recording.base_directory at the other disk instead)"
    ]


# -- free-space figures follow every segment -----------------------------------------------------------


def test_free_space_gauges_follow_each_completed_segment_not_the_check_interval(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "fs", "16m") as fs:
        daemon = start_daemon(tmp_path, fs, storage={"check_interval": 600})
        try:
            wait_for(lambda: counter(daemon, "camera_recorder_segments_completed_total", camera=CAM) >= 1)
            before = daemon.value("camera_recorder_filesystem_avail_bytes", path=str(fs))
            assert before is not None
            (fs / "other-data.bin").write_bytes(b"\x01" * (4 * MIB))  # another program's write
            done = counter(daemon, "camera_recorder_segments_completed_total", camera=CAM)
            wait_for(lambda: counter(daemon, "camera_recorder_segments_completed_total", camera=CAM) > done)
            after = daemon.value("camera_recorder_filesystem_avail_bytes", path=str(fs))
            assert after is not None and before - after >= 4 * MIB
            assert after == pytest.approx(os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize, abs=MIB)
        finally:
            daemon.stop()


def test_a_leftover_empty_file_is_never_counted_as_a_recording(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "fs", "16m") as fs:
        kept = segment_file(fs, CAM, 7200, 0)
        kept.write_bytes(make_segment(tmp_path / "model", CAM, age_days=1).read_bytes())  # a real old segment
        empty = segment_file(fs, CAM, 3600, 0)  # a previous daemon's FFmpeg died before writing anything
        daemon = start_daemon(tmp_path, fs, storage={"check_interval": 60})
        try:
            # The leftover is removed and counted as discarded when the camera starts (issue 23).
            wait_for(
                lambda: counter(daemon, "camera_recorder_segments_discarded_total", camera=CAM, reason="empty") == 1,
                what="the empty leftover discarded",
            )
            # Counted: the old segment, not the empty file (and not the files being written now).
            samples = daemon.samples()  # one scrape: a segment may complete between two
            recorded = samples[("camera_recorder_recordings_files", (("camera", CAM),))]
            completed = samples[("camera_recorder_segments_completed_total", (("camera", CAM),))]
            assert recorded == 1 + completed, f"{recorded} files counted"
            assert kept.exists() and not empty.exists()
        finally:
            daemon.stop()
