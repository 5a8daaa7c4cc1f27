"""Starting one FFmpeg: its own process group, killed with the daemon, segment list on a known descriptor.

`system.ffmpeg` may name a wrapper script that runs FFmpeg without `exec`. Two things keep its children
from outliving the run:

- Every signal goes to the whole process group (FFmpeg is started in a new session, so the group is its
  own), and `close()` SIGKILLs whatever is left of the group once the run is over.
- PR_SET_PDEATHSIG reaches only the daemon's direct child and is cleared for the children it forks, so
  each run also gets a guard: a `sh` in the same group blocked reading a pipe whose only writer is the
  daemon. When the daemon dies, even by SIGKILL, the kernel closes that pipe, the read ends, and the
  guard kills its group, the wrapper's FFmpeg included.
"""

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
# The guard waits for end-of-file on its stdin (the daemon's pipe), then kills its own process group.
GUARD_SHELL = "/bin/sh"
GUARD_SCRIPT = "read _ignored; kill -9 0"


@dataclass
class FFmpegProcess:
    """A running FFmpeg (the leader of its own process group) and the parent's ends of its pipes."""

    popen: subprocess.Popen[bytes]
    stdout_fd: int
    stderr_fd: int
    segment_list_fd: int
    guard_fd: int = -1  # the write end of the guard's pipe: closing it (or dying) ends the group

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        """Send `signum` to every process of the group: FFmpeg, or a wrapper script and its FFmpeg."""
        _signal_group(self.popen.pid, signum)

    def close(self) -> None:
        """After the run: kill what a wrapper left in the group, and close the daemon's ends of the pipes."""
        # The group id is the leader's pid, which the kernel keeps allocated while any member lives, so this
        # reaches only our own leftovers (ESRCH, ignored, when there are none).
        _signal_group(self.popen.pid, signal.SIGKILL)
        for fd in (self.stdout_fd, self.stderr_fd, self.segment_list_fd, self.guard_fd):
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        self.guard_fd = -1


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone (a PermissionError would mean the id now belongs to someone else's group)


Launcher = Callable[[FFmpegCommand], FFmpegProcess]


def die_with_parent() -> None:
    """In a child before exec: SIGKILL when the daemon thread that forked it ends (the daemon included)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _start_guard(guard_read: int) -> None:
    """In the child, before exec: fork the guard into the new process group (see the module's docstring)."""
    if os.fork() != 0:
        return
    try:
        os.dup2(guard_read, 0)
        devnull = os.open(os.devnull, os.O_WRONLY)
        # Not FFmpeg's pipes: holding them open would hide FFmpeg's exit from the supervisor.
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execv(GUARD_SHELL, ["camera-recorder-guard", "-c", GUARD_SCRIPT])
    finally:
        os._exit(127)


def spawn_ffmpeg(command: FFmpegCommand) -> FFmpegProcess:
    """Start FFmpeg so that it, and anything a wrapper forks, dies with the daemon, even on SIGKILL."""
    list_read, list_write = os.pipe()
    # Non-inheritable (PEP 446): only the guard gets the read end, as its stdin; only the daemon the write end.
    guard_read, guard_write = os.pipe()
    parent_pid = os.getpid()

    def in_child() -> None:
        # The kernel delivers SIGKILL when the thread that forked us exits; the daemon's supervisor
        # threads live as long as their camera, and systemd's KillMode covers the rest.
        die_with_parent()
        if os.getppid() != parent_pid:  # the parent died between fork and prctl
            os._exit(1)
        # Before the dup2 below, so the guard holds no inheritable copy of the segment list.
        _start_guard(guard_read)
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
            # Its own session, hence its own process group: a Ctrl-C in the operator's terminal reaches
            # the daemon, which then stops each FFmpeg so that it finalizes its segment; and every signal
            # the daemon sends reaches the whole group.
            start_new_session=True,
        )
    except BaseException:
        for fd in (list_read, list_write, guard_read, guard_write):
            os.close(fd)
        raise
    os.close(list_write)
    os.close(guard_read)
    assert popen.stdout is not None and popen.stderr is not None
    stdout_fd = os.dup(popen.stdout.fileno())
    stderr_fd = os.dup(popen.stderr.fileno())
    popen.stdout.close()
    popen.stderr.close()
    return FFmpegProcess(popen, stdout_fd, stderr_fd, list_read, guard_write)
