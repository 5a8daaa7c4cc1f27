"""A supervisor never dies (issue 11): bugs and exhausted resources are restart reasons, not a dead camera.

Also the exact gap accounting: a stall counts from the last progress, compared with the frames that are
really missing in the files (real FFmpeg, real SIGSTOP).
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_supervisor, probe, wait_for
from daemon_harness import Daemon, alive, write_config

from recorder.camera.supervisor import CameraSupervisor
from recorder.domain.vocabulary import CameraState
from recorder.ffmpeg.presets import FFmpegCommand
from recorder.ffmpeg.process import spawn_ffmpeg
from recorder.ffmpeg.run import FFmpegRun

FPS = 25


supervisor = make_supervisor


def recording(sup: CameraSupervisor) -> bool:
    return sup.snapshot.state is CameraState.RECORDING


class FailingLauncher:
    """Raises `error` on the first `times` starts, then starts the real FFmpeg."""

    def __init__(self, error: BaseException, times: int = 1) -> None:
        self.error = error
        self.times = times
        self.calls = 0

    def __call__(self, command: FFmpegCommand) -> object:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return spawn_ffmpeg(command)


def test_an_unexpected_exception_is_counted_and_the_camera_records_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    launcher = FailingLauncher(RuntimeError("a bug"), times=2)
    sup = supervisor(tmp_path, launcher)
    sup.start()
    try:
        wait_for(lambda: recording(sup), what="recording after two internal errors")
        assert sup.snapshot.restarts.get("internal_error") == 2
        assert sup.alive
    finally:
        assert sup.stop()
    tracebacks = [r for r in caplog.records if r.exc_info and "a bug" in str(r.exc_info[1])]
    assert len(tracebacks) == 1, "the same error is shown with its traceback once"
    assert all(getattr(r, "camera", None) == "cam1" for r in caplog.records if "supervision round" in r.message)


def test_an_oserror_from_proc_sampling_is_skipped_without_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real_open = os.open

    def unreadable_proc(path: str, flags: int, *args: Any, **kwargs: Any) -> int:
        nonlocal calls
        if str(path).startswith("/proc/") and str(path).endswith("/stat"):
            calls += 1
            raise OSError(errno.EMFILE, "Too many open files")  # what /proc gives with the fd table full
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr("recorder.ffmpeg.run.os.open", unreadable_proc)
    sup = supervisor(tmp_path)
    sup.start()
    try:
        wait_for(lambda: recording(sup), what="recording")
        pid = sup.snapshot.ffmpeg_pid
        wait_for(lambda: calls >= 2, what="two samples")
        assert recording(sup) and sup.snapshot.ffmpeg_pid == pid
        assert sum(sup.snapshot.restarts.values()) == 0
    finally:
        assert sup.stop()


def test_an_exception_mid_run_reaps_ffmpeg_counts_and_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sup = supervisor(tmp_path)
    original = FFmpegRun._on_segment_lines
    raised: list[int] = []

    def broken_once(run: FFmpegRun, lines: list[str]) -> None:
        if not raised:
            raised.append(sup.snapshot.ffmpeg_pid or 0)
            raise KeyError("a bug in segment accounting")
        original(run, lines)

    monkeypatch.setattr(FFmpegRun, "_on_segment_lines", broken_once)
    sup.start()
    try:
        wait_for(lambda: raised and sup.snapshot.restarts.get("internal_error") == 1, what="the internal error")
        wait_for(lambda: recording(sup) and sup.snapshot.ffmpeg_pid != raised[0], what="a new FFmpeg")
        assert not alive(raised[0]), "the FFmpeg of the failed round was left running"
        assert sup.alive
    finally:
        assert sup.stop()


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN])
def test_resource_errors_when_spawning_are_their_own_reason_and_recover(tmp_path: Path, code: int) -> None:
    sup = supervisor(tmp_path, FailingLauncher(OSError(code, os.strerror(code)), times=3))
    sup.start()
    try:
        wait_for(lambda: recording(sup), what="recording once the resource is back")
        assert sup.snapshot.restarts.get("resource_exhausted") == 3
        assert sup.snapshot.restarts.get("config", 0) == 0
        assert sup.snapshot.state is not CameraState.FAILED
    finally:
        assert sup.stop()


def _nofile(pid: int) -> tuple[int, int]:
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


def test_a_daemon_out_of_descriptors_records_again_when_they_return(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.yaml",
        tmp_path / "rec",
        cameras={"cam1": {"test_pattern": True, "resolution": "160x120", "framerate": 25}},
    )
    daemon = Daemon(config)
    try:
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1.0, what="recording")
        (old_pid,) = daemon.ffmpeg_pids()
        original = _nofile(daemon.proc.pid)
        open_now = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
        # No descriptor left for a new FFmpeg's pipes: the next start fails with EMFILE.
        # Only the soft limit: raising a lowered hard limit needs CAP_SYS_RESOURCE.
        subprocess.run(["prlimit", f"--pid={daemon.proc.pid}", f"--nofile={open_now}:{original[1]}"], check=True)
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: "resource_exhausted" in daemon.log(), what="the failed start to be logged")
        subprocess.run(["prlimit", f"--pid={daemon.proc.pid}", f"--nofile={original[0]}:{original[1]}"], check=True)
        wait_for(
            lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1.0,
            timeout=20,
            what="recording again without a daemon restart",
        )
        assert (
            daemon.value("camera_recorder_ffmpeg_restarts_total", camera="cam1", reason="resource_exhausted") or 0
        ) >= 1
        assert not alive(old_pid)
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log()


def test_the_gap_of_a_stall_counts_from_the_last_progress(tmp_path: Path) -> None:
    """The gap counter matches the video really missing in the files, within 1 s per stall."""
    stalls = 2
    # A stall timeout well above the 1 s tolerance: counting from the detection would miss 5 s a stall.
    sup = supervisor(tmp_path, supervisor={"stall_timeout": 5, "backoff_initial": 0.05})
    started = time.monotonic()
    sup.start()
    try:
        for _ in range(stalls):
            wait_for(lambda: recording(sup) and sup.snapshot.frames > 0, what="recording")
            pid = sup.snapshot.ffmpeg_pid
            assert pid is not None
            wait_for(lambda s=sup.snapshot.segments_completed: sup.snapshot.segments_completed > s, what="a segment")
            os.kill(pid, signal.SIGSTOP)
            wait_for(lambda p=pid: recording(sup) and sup.snapshot.ffmpeg_pid != p, timeout=20, what="a replacement")
        wait_for(lambda s=sup.snapshot.segments_completed: sup.snapshot.segments_completed > s, what="a segment")
    finally:
        stopped = time.monotonic()
        gap = sup.snapshot.gap_seconds_at(stopped)
        assert sup.stop()
    frames = sum(probe(p)["frames"] for p in (tmp_path / "cam1").iterdir())
    missing = (stopped - started) - frames / FPS
    assert sup.snapshot.restarts.get("stall") == stalls
    assert abs(gap - missing) <= 1.0 * stalls, f"gap counted {gap:.2f} s, missing in the files {missing:.2f} s"
