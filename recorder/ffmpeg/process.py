"""Starting one FFmpeg: a process group of its run, killed with the daemon, segment list on a known descriptor.

`system.ffmpeg` may name a wrapper script that runs FFmpeg without `exec`. Two things keep its children
from outliving the run:

- Each run has a process group of its own; every signal goes to the whole group, and `close()` SIGKILLs
  whatever is left of it once the run is over.
- PR_SET_PDEATHSIG reaches only the daemon's direct child and is cleared for the children it forks, so
  each run also gets a guard: a `sh`, started first and leading the group FFmpeg then joins, blocked
  reading a pipe whose only writer is the daemon. When the daemon dies, even by SIGKILL and even right
  after FFmpeg's fork, the kernel closes that pipe, the read ends, and the guard kills its group, the
  wrapper's FFmpeg included. The guard is the daemon's own child, so the daemon reaps it (no zombie,
  even when the daemon runs as a container's PID 1).

How FFmpeg is started: Python code run between fork and exec (`preexec_fn`) may deadlock in a threaded
process such as the daemon, and forces fork where vfork would do. On Python 3.11+, with its guard running,
FFmpeg starts without one: `process_group=` joins the guard's group and `pass_fds=` hands over the segment
list's write end (its number replaces SEGMENT_LIST_FD in the `pipe:` argument). PR_SET_PDEATHSIG has no
Popen argument, and needs none there: the child joins the group before it closes its copy of the guard's
pipe (at exec), so a daemon killed at any moment, even between the fork and the joining, still ends with the
guard killing a group FFmpeg is in. Without a guard (it could not start), and on Python 3.10, the child runs
the earlier preexec function (group, PDEATHSIG, the check that the daemon still lives, the dup2), which is
then FFmpeg's only tie to the daemon's life.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from recorder.ffmpeg.presets import SEGMENT_LIST_FD, FFmpegCommand

_PR_SET_PDEATHSIG = 1
# Loaded before any fork: the child only calls into it.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
# The guard waits for end-of-file on its stdin (the daemon's pipe), then kills its own process group.
GUARD_SHELL = "/bin/sh"
# It ignores the stop signals the supervisor sends the group (SIGINT, SIGTERM), so it guards the whole run.
GUARD_SCRIPT = "trap '' INT TERM HUP; read _ignored; kill -9 0"

# Popen's process_group= (3.11+): the child's setpgid without Python code between fork and exec.
PROCESS_GROUP_ARGUMENT = sys.version_info >= (3, 11)
_SEGMENT_LIST_ARGUMENT = f"pipe:{SEGMENT_LIST_FD}"

log = logging.getLogger(__name__)


@dataclass
class FFmpegProcess:
    """A running FFmpeg in a process group of its own run and the parent's ends of its pipes."""

    popen: subprocess.Popen[bytes]
    stdout_fd: int
    stderr_fd: int
    segment_list_fd: int
    guard: subprocess.Popen[bytes] | None = None  # see the module's docstring
    guard_fd: int = -1  # the write end of the guard's pipe: when it closes, the guard kills the group
    pgid: int = 0  # the run's process group: the guard's pid, or FFmpeg's when no guard could start; 0: FFmpeg's

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        """Send `signum` to every process of the group: FFmpeg, or a wrapper script and its FFmpeg."""
        _signal_group(self.pgid or self.popen.pid, signum)

    def close(self) -> None:
        """After the run: kill what a wrapper left in the group, reap the guard, close the daemon's pipe ends."""
        # The group id is the leader's pid, which the kernel keeps allocated while any member lives, so this
        # reaches only our own leftovers (ESRCH, ignored, when there are none).
        _signal_group(self.pgid or self.popen.pid, signal.SIGKILL)
        if self.guard is not None:
            self.guard.kill()  # its group's leader, so killed already
            self.guard.wait()
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


def _start_guard() -> tuple[subprocess.Popen[bytes] | None, int]:
    """The guard, leading a new process group for FFmpeg to join, and the daemon's end of its pipe.

    Started before FFmpeg, so no moment exists in which FFmpeg runs unguarded: a daemon killed right after
    FFmpeg's fork still takes a wrapper's FFmpeg down. (None, -1) when it cannot start.
    """
    guard_read, guard_write = os.pipe()
    argv = [GUARD_SHELL, "-c", GUARD_SCRIPT, "camera-recorder-guard"]
    try:
        # A new group in the daemon's session, for FFmpeg to join.
        if PROCESS_GROUP_ARGUMENT:
            guard = subprocess.Popen(  # novermin (3.11+ only: PROCESS_GROUP_ARGUMENT)
                argv, stdin=guard_read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0
            )
        else:
            guard = subprocess.Popen(
                argv,
                stdin=guard_read,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=lambda: os.setpgid(0, 0),
            )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot start FFmpeg's guard (%s): a wrapper's FFmpeg may outlive a daemon crash", exc)
        os.close(guard_write)
        return None, -1
    finally:
        os.close(guard_read)
    return guard, guard_write


def _end_guard(guard: subprocess.Popen[bytes] | None, guard_fd: int) -> None:
    """Undo _start_guard when FFmpeg could not be started or watched: kill its group, reap it, close its pipe."""
    if guard is not None:
        _signal_group(guard.pid, signal.SIGKILL)
        guard.wait()
    if guard_fd >= 0:
        os.close(guard_fd)


def spawn_ffmpeg(command: FFmpegCommand) -> FFmpegProcess:
    """Start FFmpeg so that it, and anything a wrapper forks, dies with the daemon, even on SIGKILL."""
    guard, guard_fd = _start_guard()
    group = guard.pid if guard is not None else 0  # 0: a group of FFmpeg's own
    list_read, list_write = os.pipe()
    env = {**os.environ, **command.env}
    try:
        if guard is not None and PROCESS_GROUP_ARGUMENT:
            popen = _popen_in_group(command.argv, env, group, list_write)
        else:
            popen = _popen_with_preexec(command.argv, env, group, list_write)
    except BaseException:
        os.close(list_read)
        os.close(list_write)
        _end_guard(guard, guard_fd)
        raise
    os.close(list_write)
    assert popen.stdout is not None and popen.stderr is not None
    duplicated: list[int] = []
    try:
        for pipe in (popen.stdout, popen.stderr):
            duplicated.append(os.dup(pipe.fileno()))
    except OSError:
        # Out of descriptors (EMFILE) with FFmpeg already running: nothing would watch or reap it.
        _signal_group(group or popen.pid, signal.SIGKILL)
        popen.wait()
        for fd in (*duplicated, list_read):
            os.close(fd)
        _end_guard(guard, guard_fd)
        raise
    finally:
        popen.stdout.close()
        popen.stderr.close()
    stdout_fd, stderr_fd = duplicated
    return FFmpegProcess(popen, stdout_fd, stderr_fd, list_read, guard, guard_fd, group or popen.pid)


def _popen_in_group(argv: Sequence[str], env: dict[str, str], group: int, list_write: int) -> subprocess.Popen[bytes]:
    """3.11+, with a guard: no Python code in the child (see the module's docstring)."""
    # The segment list is written to the descriptor handed over, whatever its number.
    argv = [f"pipe:{list_write}" if arg == _SEGMENT_LIST_ARGUMENT else arg for arg in argv]
    return subprocess.Popen(  # novermin (3.11+ only: PROCESS_GROUP_ARGUMENT)
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        pass_fds=(list_write,),  # and nothing else of the daemon's
        process_group=group,
    )


def _popen_with_preexec(
    argv: Sequence[str], env: dict[str, str], group: int, list_write: int
) -> subprocess.Popen[bytes]:
    """Python 3.10, or no guard: the child joins the group, dies with the daemon and takes the segment list."""
    parent_pid = os.getpid()

    def in_child() -> None:
        # A process group apart from the daemon's: a Ctrl-C in the operator's terminal reaches the daemon
        # only, which then stops each FFmpeg so that it finalizes its segment; the daemon's signals reach the
        # whole group (a wrapper script and its FFmpeg), and so does the guard's SIGKILL.
        os.setpgid(0, group)
        # The kernel delivers SIGKILL when the thread that forked us exits; the daemon's supervisor
        # threads live as long as their camera, and systemd's KillMode covers the rest.
        die_with_parent()
        if os.getppid() != parent_pid:  # the parent died between fork and prctl
            os._exit(1)
        os.dup2(list_write, SEGMENT_LIST_FD)

    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        # Inheritable descriptors only: the dup2'ed segment list fd, nothing of the daemon's.
        close_fds=False,
        preexec_fn=in_child,
    )
