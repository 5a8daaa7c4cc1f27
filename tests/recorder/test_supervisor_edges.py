"""Supervisor edges driven through a fake FFmpeg: a real child process stands in, the test writes its pipes.

No FFmpeg runs: the launcher hands the supervisor pipes whose write ends the test holds, so each edge
(starting -> recording on the first frame, starting -> backoff when it dies before one) is caused by
exactly the bytes the test writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import make_supervisor, wait_for

from recorder.ffmpeg_process import FFmpegProcess
from recorder.presets import FFmpegCommand
from recorder.states import CameraState
from recorder.supervisor import CameraSupervisor


class FakeFFmpeg:
    """A launcher: each start is a `sleep` in its own session, with pipes this object writes."""

    def __init__(self) -> None:
        self.stdout_w: int = -1
        self.stderr_w: int = -1
        self.list_w: int = -1
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __call__(self, command: FFmpegCommand) -> FFmpegProcess:
        self.starts += 1
        out_r, self.stdout_w = os.pipe()
        err_r, self.stderr_w = os.pipe()
        list_r, self.list_w = os.pipe()
        self.popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        return FFmpegProcess(self.popen, out_r, err_r, list_r)

    def progress(self, frame: int) -> None:
        os.write(self.stdout_w, f"frame={frame}\nfps=25.0\nout_time_us={frame * 40000}\nprogress=continue\n".encode())

    def dies(self, stderr: str) -> None:
        """FFmpeg writes its last words and is gone."""
        os.write(self.stderr_w, stderr.encode() + b"\n")
        self.close()
        assert self.popen is not None
        self.popen.kill()

    def close(self) -> None:
        """The process's ends of the pipes close, as they do when it exits."""
        for fd in (self.stdout_w, self.stderr_w, self.list_w):
            if fd >= 0:
                os.close(fd)
        self.stdout_w = self.stderr_w = self.list_w = -1


@contextmanager
def started(tmp_path: Path) -> Iterator[tuple[CameraSupervisor, FakeFFmpeg]]:
    """A supervisor on a fake FFmpeg, running and in `starting`; stopped (pipes closed) afterwards."""
    fake = FakeFFmpeg()
    sup = make_supervisor(tmp_path, fake, supervisor={"stall_timeout": 30, "backoff_initial": 30, "backoff_max": 60})
    sup.start()
    try:
        wait_for(lambda: sup.snapshot.state is CameraState.STARTING, what="starting")
        yield sup, fake
    finally:
        fake.close()
        sup.stop(timeout=10)


def test_starting_to_recording_when_the_first_frame_is_written(tmp_path: Path) -> None:
    with started(tmp_path) as (sup, fake):
        fake.progress(0)  # progress without a frame: still starting
        fake.progress(5)
        wait_for(lambda: sup.snapshot.state is CameraState.RECORDING, what="recording")
        assert sup.snapshot.frames == 5


def test_starting_to_backoff_when_ffmpeg_dies_before_its_first_frame(tmp_path: Path) -> None:
    with started(tmp_path) as (sup, fake):
        fake.dies("Something unexpected")
        wait_for(lambda: sup.snapshot.state is CameraState.BACKOFF, what="backoff")
        assert dict(sup.snapshot.restarts) == {"crashed": 1}  # a failed start, never "recording"
