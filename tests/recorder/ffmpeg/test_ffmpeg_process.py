"""FFmpeg in its own process group: a `system.ffmpeg` wrapper script without `exec` leaves no orphan."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import small_config, wait_for
from daemon_harness import Daemon, alive, ffmpeg_descendants, write_config

from recorder.camera.supervisor import CameraSupervisor
from recorder.config import Config
from recorder.domain.vocabulary import CameraState
from recorder.ffmpeg.presets import build_command


def _wrapper(folder: Path) -> Path:
    """The shape operators write to add an environment variable: FFmpeg runs as the script's child."""
    script = folder / "ffmpeg-wrapper"
    script.write_text('#!/bin/sh\nexport SOME_DRIVER_SETTING=1\nffmpeg "$@"\necho "wrapper done" >&2\n')
    script.chmod(0o755)
    return script


def _wrapped_supervisor(config: Config, tmp_path: Path) -> CameraSupervisor:
    wrapper = _wrapper(tmp_path)
    return CameraSupervisor(
        config.cameras[0],
        lambda node, suffix: build_command(config.cameras[0], config, str(wrapper), name_suffix=suffix),
        config.supervisor,
        segment_time=config.recording.segment_time,
        ffprobe="ffprobe",
    )


def _recording_through_the_wrapper(sup: CameraSupervisor) -> tuple[int, int]:
    """The wrapper script's pid (what the supervisor started) and its FFmpeg's, once recording."""
    wait_for(lambda: sup.snapshot.state is CameraState.RECORDING, what="recording through the wrapper")
    script_pid = sup.snapshot.ffmpeg_pid
    assert script_pid is not None
    (ffmpeg_pid,) = wait_for(lambda: ffmpeg_descendants(script_pid), what="the wrapper's FFmpeg")
    return script_pid, ffmpeg_pid


def test_a_stall_kill_reaches_the_wrappers_ffmpeg(tmp_path: Path) -> None:
    config = small_config(tmp_path / "rec")
    sup = _wrapped_supervisor(config, tmp_path)
    sup.start()
    try:
        script_pid, ffmpeg_pid = _recording_through_the_wrapper(sup)
        assert os.getpgid(ffmpeg_pid) == os.getpgid(script_pid)  # the script and its FFmpeg share the run's group
        os.kill(ffmpeg_pid, signal.SIGSTOP)  # frozen: no progress, and deaf to SIGTERM until continued
        wait_for(lambda: sup.snapshot.restarts.get("stall") == 1, timeout=20, what="the stall restart")
        wait_for(lambda: not alive(ffmpeg_pid), timeout=5, what="the stalled FFmpeg to be gone")
        wait_for(lambda: sup.snapshot.state is CameraState.RECORDING, what="recording again")
        assert sup.snapshot.ffmpeg_pid != script_pid
    finally:
        assert sup.stop()
    assert not alive(ffmpeg_pid)


def test_the_wrappers_ffmpeg_crashing_is_seen_at_once(tmp_path: Path) -> None:
    """The guard holds none of FFmpeg's pipes, so the crash is a crash, not a stall found seconds later."""
    config = small_config(tmp_path / "rec", supervisor={"stall_timeout": 30})
    sup = _wrapped_supervisor(config, tmp_path)
    sup.start()
    try:
        _script_pid, ffmpeg_pid = _recording_through_the_wrapper(sup)
        os.kill(ffmpeg_pid, signal.SIGKILL)
        # Well inside the 30 s stall timeout: only an end of the pipes can tell the supervisor this soon.
        wait_for(lambda: sum(sup.snapshot.restarts.values()) == 1, timeout=10, what="the restart")
        assert "stall" not in sup.snapshot.restarts
    finally:
        assert sup.stop()


def test_the_daemon_stopping_leaves_no_ffmpeg_of_a_wrapper(tmp_path: Path) -> None:
    wrapper = _wrapper(tmp_path)
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec", system={"ffmpeg": str(wrapper)}))
    try:
        pids = wait_for(lambda: (p := ffmpeg_descendants(daemon.proc.pid)) and len(p) == 2 and p, what="two FFmpeg")
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam2") == 1, what="cam2")
    finally:
        code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.log()
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=5, what="no FFmpeg after the daemon's exit")


def test_sigkill_of_the_daemon_leaves_no_ffmpeg_of_a_wrapper(tmp_path: Path) -> None:
    """PDEATHSIG reaches only the script; the group's guard takes the script's FFmpeg down with it."""
    wrapper = _wrapper(tmp_path)
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec", system={"ffmpeg": str(wrapper)}))
    try:
        pids = wait_for(lambda: (p := ffmpeg_descendants(daemon.proc.pid)) and len(p) == 2 and p, what="two FFmpeg")
    finally:
        daemon.kill()
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=5, what="FFmpeg to die with the daemon")


def test_running_out_of_descriptors_after_the_fork_leaves_no_unwatched_ffmpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMFILE between starting FFmpeg and taking its pipes: the started FFmpeg is killed and reaped."""
    from recorder.ffmpeg import process as ffmpeg_process

    started: list[subprocess.Popen[bytes]] = []
    real_popen, real_dup = subprocess.Popen, os.dup

    def recording_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    calls = iter((real_dup, _emfile))
    monkeypatch.setattr(ffmpeg_process.subprocess, "Popen", recording_popen)
    monkeypatch.setattr(ffmpeg_process.os, "dup", lambda fd: next(calls)(fd))
    fds_before = set(os.listdir("/proc/self/fd"))
    command = build_command(small_config(tmp_path / "rec").cameras[0], small_config(tmp_path / "rec"), "ffmpeg")
    with pytest.raises(OSError, match="Too many open files"):
        ffmpeg_process.spawn_ffmpeg(command)
    assert len(started) == 2, "the guard, then FFmpeg"
    assert all(p.returncode is not None for p in started), "the started FFmpeg and its guard were reaped"
    assert set(os.listdir("/proc/self/fd")) <= fds_before, "every descriptor taken for it was closed"


def _emfile(fd: int) -> int:
    raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))


def _spawned_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, Any]], Any]:
    """Popen's keyword arguments for each process spawn_ffmpeg starts, and the process it returned."""
    from recorder.ffmpeg import process as ffmpeg_process

    calls: list[dict[str, Any]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        calls.append(kwargs)
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(ffmpeg_process.subprocess, "Popen", recording_popen)
    config = small_config(tmp_path / "rec")
    (tmp_path / "rec" / "cam1").mkdir(parents=True)
    return calls, ffmpeg_process.spawn_ffmpeg(build_command(config.cameras[0], config, "ffmpeg"))


def _segment_list_line(process: Any) -> str:
    """The first line FFmpeg writes on the segment list (the muxer reports a segment once cut)."""
    process.signal(signal.SIGINT)  # FFmpeg finalizes its segment, then reports it and exits
    process.popen.wait(20)
    with os.fdopen(os.dup(process.segment_list_fd), "rb") as listed:
        return listed.readline().decode()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="process_group= is Python 3.11's")
def test_on_311_ffmpeg_and_its_guard_start_without_a_preexec_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Python code runs between fork and exec in the threaded daemon; FFmpeg still joins the guard's
    group, and its segment list still arrives on the descriptor handed over."""
    calls, process = _spawned_with(tmp_path, monkeypatch)
    try:
        assert [c.get("preexec_fn") for c in calls] == [None, None], "a preexec_fn is still used"
        assert calls[0]["process_group"] == 0 and calls[1]["process_group"] == process.guard.pid
        assert os.getpgid(process.pid) == process.pgid == process.guard.pid
        wait_for(lambda: next((tmp_path / "rec" / "cam1").glob("*.mkv"), None), what="FFmpeg's segment")
        assert _segment_list_line(process).startswith("cam1_")
    finally:
        process.close()
        process.popen.wait(5)


def test_without_process_group_the_preexec_path_still_groups_and_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.10's path (kept for it, and for a run whose guard cannot start): the same group, the same
    segment list on SEGMENT_LIST_FD."""
    from recorder.ffmpeg import process as ffmpeg_process

    monkeypatch.setattr(ffmpeg_process, "PROCESS_GROUP_ARGUMENT", False)
    calls, process = _spawned_with(tmp_path, monkeypatch)
    try:
        assert all(c.get("preexec_fn") is not None for c in calls)
        assert os.getpgid(process.pid) == process.pgid == process.guard.pid
        wait_for(lambda: next((tmp_path / "rec" / "cam1").glob("*.mkv"), None), what="FFmpeg's segment")
        assert _segment_list_line(process).startswith("cam1_")
    finally:
        process.close()
        process.popen.wait(5)
