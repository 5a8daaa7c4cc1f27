"""One owner per recordings folder: a second daemon is refused, and the one-shot commands (`--transcode`,
`--cleanup`) never touch a segment a running daemon may still be writing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import probe, wait_for
from daemon_harness import REPO, Daemon, free_port, write_config
from transcoding_support import make_segment

from recorder.app.cli import main
from recorder.footage.segments import parse_segment_name, segment_file_name
from recorder.storage.recordings_owner import DaemonLock, FolderInUse, daemon_running, lock_path, open_segments

Held = tuple[Path, Callable[..., subprocess.Popen[str]]]

HOLDER = """
import sys
from pathlib import Path
from recorder.storage.recordings_owner import DaemonLock
lock = DaemonLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def held_by_another_process(tmp_path: Path) -> Iterator[tuple[Path, Callable[..., subprocess.Popen[str]]]]:
    """`tmp_path/rec` locked by a real second process, as a daemon would hold it."""
    base = tmp_path / "rec"
    procs: list[subprocess.Popen[str]] = []

    def hold() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(base)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield base, hold
    for proc in procs:
        proc.kill()
        proc.wait(10)


def old_segment(base: Path, camera: str, age: float, content: bytes = b"x" * 100) -> Path:
    """A segment file `age` seconds old by its name and by its modification time."""
    start = time.time() - age
    path = base / camera / segment_file_name(camera, start)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (start, start))
    return path


def test_a_second_lock_on_the_folder_is_refused_naming_the_process_that_holds_it(held_by_another_process: Held) -> None:
    base, hold = held_by_another_process
    holder = hold()
    with pytest.raises(FolderInUse) as refused:
        DaemonLock(base).acquire(wait=0.2)
    assert f"(pid {holder.pid}) already records into {base}" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_lock_goes_with_the_process_that_held_it(held_by_another_process: Held) -> None:
    base, hold = held_by_another_process
    holder = hold()
    assert daemon_running(base)
    holder.kill()
    holder.wait(10)
    assert not daemon_running(base)
    lock = DaemonLock(base)
    lock.acquire(wait=0)
    assert lock.held and daemon_running(base)
    lock.release()
    assert not daemon_running(base)


def test_an_unwritable_folder_is_left_unlocked_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    lock = DaemonLock(Path("/proc/self/camera-recorder-recordings"))  # mkdir is refused there, even to root
    with caplog.at_level(logging.WARNING):
        lock.acquire(wait=0)
    assert not lock.held
    assert "cannot lock /proc/self/camera-recorder-recordings against a second daemon" in caplog.text


def test_the_lock_writes_nothing_into_the_folder(held_by_another_process: Held) -> None:
    base, hold = held_by_another_process
    hold()
    assert [p.name for p in base.iterdir()] == [lock_path(base).name]
    assert lock_path(base).stat().st_size == 0  # a disk full to its last page keeps that page for FFmpeg


def test_without_a_daemon_nothing_is_open(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    old_segment(base, "cam1", age=3600)
    fresh = old_segment(base, "cam1", age=1)
    os.utime(fresh)
    assert open_segments(base, ["cam1"]) == frozenset()
    gone = DaemonLock(base)  # a daemon that stopped: its lock file stays, its lock does not
    gone.acquire(wait=0)
    assert open_segments(base, ["cam1"]) == {fresh}
    gone.release()
    assert open_segments(base, ["cam1"]) == frozenset()


def test_while_a_daemon_runs_its_newest_and_lately_written_segments_are_open(held_by_another_process: Held) -> None:
    base, hold = held_by_another_process
    untouched = old_segment(base, "cam1", age=5400)
    newest = old_segment(base, "cam1", age=3600)
    # Named before the others (a clock stepped back), but written to a moment ago.
    stepped_back = old_segment(base, "cam2", age=9000)
    os.utime(stepped_back)
    quiet_for_90s = old_segment(base, "cam2", age=7000)
    os.utime(quiet_for_90s, (time.time() - 90, time.time() - 90))
    cam2_newest = old_segment(base, "cam2", age=1800)
    (base / "cam2" / "notes.txt").write_text("not a segment")
    hold()
    assert open_segments(base, ["cam1", "cam2", "cam3"]) == {newest, stepped_back, cam2_newest}
    assert untouched not in open_segments(base, ["cam1"])
    # A stall_timeout longer than the minute widens "lately": FFmpeg may sit that long before it is killed.
    assert quiet_for_90s in open_segments(base, ["cam2"], stall_timeout=60)


def test_cleanup_never_deletes_what_the_running_daemon_may_be_writing(
    held_by_another_process: Held, capsys: pytest.CaptureFixture[str]
) -> None:
    base, hold = held_by_another_process
    writing = old_segment(base, "cam1", age=9 * 86400)  # a clock stepped back names it days ago
    os.utime(writing)
    aged = old_segment(base, "cam1", age=8 * 86400)
    old_segment(base, "cam1", age=60)
    config = base.parent / "config.yaml"
    config.write_text(yaml.safe_dump({
        "cameras": {"cam1": {"test_pattern": True}},
        "recording": {"base_directory": str(base)},
        "storage": {"cleanup_days": 7},
    }))  # fmt: skip
    hold()
    assert main(["-c", str(config), "--cleanup"]) == 0
    assert writing.exists()
    assert not aged.exists()
    assert writing.name not in capsys.readouterr().out


def test_a_second_daemon_on_the_same_folder_exits_with_one_line_and_the_first_keeps_recording(
    tmp_path: Path,
) -> None:
    base = tmp_path / "rec"
    config = write_config(tmp_path / "config.yaml", base)
    first = Daemon(config)
    try:
        wait_for(lambda: (first.value("camera_recorder_segments_completed_total", camera="cam1") or 0) >= 1,
                 timeout=30, what="a first segment")  # fmt: skip
        second = subprocess.run(
            [sys.executable, "-m", "recorder", "-c", str(config), "--listen-address", f"127.0.0.1:{free_port()}"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1
        errors = [line for line in second.stderr.splitlines() if "already records into" in line]
        assert len(errors) == 1, second.stderr
        assert f"(pid {first.proc.pid}) already records into {base}" in errors[0]
        done = first.value("camera_recorder_segments_completed_total", camera="cam1") or 0
        wait_for(lambda: (first.value("camera_recorder_segments_completed_total", camera="cam1") or 0) > done,
                 timeout=30, what="the first daemon to go on recording")  # fmt: skip
        assert first.ffmpeg_pid_by_camera().keys() == {"cam1", "cam2"}
    finally:
        assert first.stop() == 0
    # Stopped, it hands the folder on: the next daemon starts on it.
    third = Daemon(config)
    assert third.stop() == 0


def test_transcode_never_swaps_the_segment_the_daemon_is_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "rec"
    # mp4: a growing fragmented file probes fine, so only the rule keeps it out of the plan.
    config = write_config(
        tmp_path / "config.yaml", base,
        cameras={"cam1": {"test_pattern": True, "resolution": "160x120", "framerate": 25}},
        recording={"segment_time": 600, "container_format": "mp4"},
        transcoding={"enabled": False, "codec": "libx265", "preset": "ultrafast", "quality": 22,
                     "min_age_days": 0, "min_savings_percent": 0, "verify_quality": False},
    )  # fmt: skip
    planted = make_segment(base, "cam1", age_days=1, container="mp4")
    a_day_ago = time.time() - 86400
    os.utime(planted, (a_day_ago, a_day_ago))  # as a day-old segment is (a fresh write counts as open)
    daemon = Daemon(config)
    try:

        def open_segment() -> Path | None:
            for path in (base / "cam1").iterdir():
                parsed = parse_segment_name(path.name)
                if path != planted and parsed and path.stat().st_size > 20_000:
                    return path
            return None

        writing = wait_for(open_segment, timeout=30, what="the daemon's open segment to hold some frames")
        assert main(["-c", str(config), "--transcode"]) == 0
        out = capsys.readouterr().out
        assert f"transcoded cam1/{planted.name}" in out
        assert writing.name not in out
        assert probe(planted)["codec"] == "hevc"
        size = writing.stat().st_size
        wait_for(lambda: writing.stat().st_size > size, timeout=20, what="FFmpeg to go on writing the same file")
        written = daemon.value("camera_recorder_frames_total", camera="cam1") or 0
    finally:
        assert daemon.stop() == 0
    kept = probe(writing)
    assert kept["codec"] == "h264"
    # Every frame FFmpeg had reported by then is in the file (a swap would have left only those before it).
    assert kept["frames"] >= written > 0


def test_a_reload_onto_a_folder_another_daemon_holds_is_refused_and_a_free_one_moves_the_lock(
    held_by_another_process: Held, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from conftest import small_config

    from recorder.daemon.recorder import Recorder
    from recorder.ffmpeg.binary import find_tools

    taken, hold = held_by_another_process
    holder = hold()
    first = small_config(tmp_path / "first")
    configs = iter([small_config(taken), small_config(tmp_path / "second")])
    recorder = Recorder(first, find_tools(first.system), config_loader=lambda: next(configs))
    recorder.take_recordings_folder()
    with caplog.at_level(logging.ERROR):
        assert recorder.reload() is False
    assert f"recording.base_directory: camera-recorder (pid {holder.pid}) already records into {taken}" in caplog.text
    assert recorder.recordings_lock.base == tmp_path / "first"
    assert recorder.reload() is True
    assert recorder.recordings_lock.base == tmp_path / "second" and recorder.recordings_lock.held
    assert not daemon_running(tmp_path / "first")
    recorder.stop()
