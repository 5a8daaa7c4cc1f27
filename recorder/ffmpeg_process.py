"""Starting one FFmpeg: its own session, killed with the daemon, segment list on a known descriptor."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from recorder.presets import SEGMENT_LIST_FD, FFmpegCommand

_PR_SET_PDEATHSIG = 1
# Loaded before any fork: the child only calls into it.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@dataclass
class FFmpegProcess:
    """A running FFmpeg and the parent's ends of its three output pipes."""

    popen: subprocess.Popen[bytes]
    stdout_fd: int
    stderr_fd: int
    segment_list_fd: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        try:
            self.popen.send_signal(signum)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        for fd in (self.stdout_fd, self.stderr_fd, self.segment_list_fd):
            try:
                os.close(fd)
            except OSError:
                pass


Launcher = Callable[[FFmpegCommand], FFmpegProcess]


def spawn_ffmpeg(command: FFmpegCommand) -> FFmpegProcess:
    """Start FFmpeg so that it dies with the daemon, even when the daemon is SIGKILLed."""
    list_read, list_write = os.pipe()
    parent_pid = os.getpid()

    def in_child() -> None:
        # The kernel delivers SIGKILL when the thread that forked us exits; the daemon's supervisor
        # threads live as long as their camera, and systemd's KillMode covers the rest.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died between fork and prctl
            os._exit(1)
        os.dup2(list_write, SEGMENT_LIST_FD)

    env = {**os.environ, **command.env}
    try:
        popen = subprocess.Popen(
            command.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            # Inheritable descriptors only: the dup2'ed segment list fd, nothing of the daemon's.
            close_fds=False,
            preexec_fn=in_child,
            # Its own session: a Ctrl-C in the operator's terminal reaches the daemon, which then
            # stops each FFmpeg so that it finalizes its segment.
            start_new_session=True,
        )
    except BaseException:
        os.close(list_read)
        os.close(list_write)
        raise
    os.close(list_write)
    assert popen.stdout is not None and popen.stderr is not None
    stdout_fd = os.dup(popen.stdout.fileno())
    stderr_fd = os.dup(popen.stderr.fileno())
    popen.stdout.close()
    popen.stderr.close()
    return FFmpegProcess(popen, stdout_fd, stderr_fd, list_read)
