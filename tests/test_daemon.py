"""The daemon as a real process: signals, segments left behind, and no FFmpeg left over."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from conftest import probe, wait_for
from daemon_harness import Daemon, alive, write_config


def _segments(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*.mkv"))


def test_sigterm_finalizes_every_segment_and_leaves_no_ffmpeg(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    daemon = Daemon(write_config(tmp_path / "config.yaml", base, recording={"segment_time": 60}))
    try:
        wait_for(lambda: len(daemon.ffmpeg_pids()) == 2, what="two FFmpeg processes")
        wait_for(lambda: (daemon.value("camera_recorder_frames_total", camera="cam2") or 0) > 50, what="frames")
        pids = daemon.ffmpeg_pids()
    finally:
        code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.log()
    assert not any(alive(pid) for pid in pids)
    files = _segments(base)
    assert {f.parent.name for f in files} == {"cam1", "cam2"}
    for f in files:
        result = probe(f)
        # Finalized files carry their duration in the header: an unfinished MKV has none.
        assert result["ok"] and result["frames"] > 50 and result["duration"] > 2, (f, result)
    assert "daemon stopping" in daemon.log()


def test_sigint_stops_like_sigterm(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    wait_for(lambda: len(daemon.ffmpeg_pids()) == 2, what="two FFmpeg processes")
    pids = daemon.ffmpeg_pids()
    assert daemon.stop(signal.SIGINT) == 0
    assert not any(alive(pid) for pid in pids)


def test_sigkill_of_the_daemon_leaves_no_ffmpeg(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    try:
        wait_for(lambda: len(daemon.ffmpeg_pids()) == 2, what="two FFmpeg processes")
        pids = daemon.ffmpeg_pids()
    finally:
        daemon.kill()
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=5, what="FFmpeg to die with the daemon")


def test_one_camera_failing_never_restarts_the_other(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    try:
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1, what="cam1")
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam2") == 1, what="cam2")
        by_camera = {}
        for pid in daemon.ffmpeg_pids():
            cmdline = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
            by_camera["cam1" if "/cam1/" in cmdline else "cam2"] = pid
        os.kill(by_camera["cam1"], signal.SIGKILL)
        wait_for(
            lambda: daemon.value("camera_recorder_ffmpeg_restarts_total", camera="cam1", reason="crashed") == 1,
            what="cam1's restart",
        )
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1, what="cam1 back")
        assert alive(by_camera["cam2"])
        assert (
            sum(
                daemon.value("camera_recorder_ffmpeg_restarts_total", camera="cam2", reason=r) or 0
                for r in ("exited", "crashed", "stall")
            )
            == 0
        )
    finally:
        assert daemon.stop() == 0
