"""A stand-in FFmpeg whose pipes the test writes: no FFmpeg runs, each start is a `sleep` child.

The child holds the write ends of the pipes too, so they reach end-of-file when it exits or is killed,
as FFmpeg's do; the test keeps its own copies to write progress, stderr and segment-list lines.
"""

from __future__ import annotations

import os
import subprocess
import sys

from recorder.ffmpeg.presets import FFmpegCommand
from recorder.ffmpeg.process import FFmpegProcess

_CHILD = """
import os, signal, sys, time
if sys.argv[2] == "ignore-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
ready = int(sys.argv[1])
os.write(ready, b"r")
os.close(ready)
time.sleep(60)
"""


class FakeFFmpeg:
    """A launcher: each start is a `sleep` in its own session, with pipes this object writes."""

    def __init__(self, *, ignore_sigterm: bool = False) -> None:
        self.stdout_w: int = -1
        self.stderr_w: int = -1
        self.list_w: int = -1
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.ignore_sigterm = ignore_sigterm  # a frozen FFmpeg: only SIGKILL ends it

    def __call__(self, command: FFmpegCommand) -> FFmpegProcess:
        self.starts += 1
        out_r, self.stdout_w = os.pipe()
        err_r, self.stderr_w = os.pipe()
        list_r, self.list_w = os.pipe()
        ready_r, ready_w = os.pipe()
        mode = "ignore-sigterm" if self.ignore_sigterm else "default"
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(ready_w), mode],
            start_new_session=True,
            pass_fds=(self.stdout_w, self.stderr_w, self.list_w, ready_w),
        )
        os.close(ready_w)
        try:
            os.read(ready_r, 1)  # its signal disposition is set: a SIGTERM from now on meets it
        finally:
            os.close(ready_r)
        return FFmpegProcess(self.popen, out_r, err_r, list_r)

    def progress(self, frame: int) -> None:
        os.write(self.stdout_w, f"frame={frame}\nfps=25.0\nout_time_us={frame * 40000}\nprogress=continue\n".encode())

    def stderr(self, line: str) -> None:
        os.write(self.stderr_w, line.encode() + b"\n")

    def segment_listed(self, name: str, start: float, end: float) -> None:
        """The muxer's csv segment list: a segment is complete."""
        os.write(self.list_w, f"{name},{start:.6f},{end:.6f}\n".encode())

    def dies(self, stderr: str) -> None:
        """FFmpeg writes its last words and is gone."""
        self.stderr(stderr)
        self.close()
        assert self.popen is not None
        self.popen.kill()

    def close(self) -> None:
        """The test's ends of the pipes close; the child's close when it exits."""
        for fd in (self.stdout_w, self.stderr_w, self.list_w):
            if fd >= 0:
                os.close(fd)
        self.stdout_w = self.stderr_w = self.list_w = -1
