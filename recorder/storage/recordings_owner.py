"""Who writes into a recordings folder: the one daemon that owns it, and the segments it may be writing.

Every writer of a camera folder (the daemon, `--transcode`, `--cleanup`, export) needs the same answer to
"is this segment still being written?", across process boundaries. The daemon holds an exclusive `flock`
on `<base>/.recorder-lock` for its whole life, so a second daemon on the same folder is refused. A
one-shot command asks `open_segments()`: nothing is open when no daemon holds the lock; while one does,
each camera's newest segment and every segment written to lately are. A segment FFmpeg has open grows
every second (a Matroska cluster, an MP4 fragment) or is killed as stalled within `stall_timeout`, so
"lately" covers every open file, names from a clock stepped back included, at the cost of leaving a
segment closed a moment ago for the next run.

Nothing is written into the folder for this (the lock file stays empty, and the holder's pid comes from
/proc/locks): a disk full to the last page keeps that page for FFmpeg.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from recorder.footage.segments import parse_segment_name

log = logging.getLogger(__name__)

LOCK_NAME = ".recorder-lock"  # a dot name is never a camera id (ids are letters, digits, _ and -)
# Written to within this long: open. Never less than twice the configured stall_timeout (open_segments).
RECENTLY_WRITTEN_SECONDS = 60.0
# A daemon that is just stopping (systemd restarting it) still holds the lock for the seconds FFmpeg takes
# to finalize; its successor waits that long before it gives up.
TAKE_OVER_WAIT_SECONDS = 2.0
PROC_LOCKS = Path("/proc/locks")


class FolderInUse(RuntimeError):
    """Another daemon records into this recordings folder."""


def lock_path(base: Path) -> Path:
    return base / LOCK_NAME


class DaemonLock:
    """The daemon's exclusive hold on a recordings folder; the kernel drops it with the process."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, wait: float = TAKE_OVER_WAIT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        """Take the folder or raise FolderInUse naming the daemon that has it.

        A folder the daemon cannot create the lock in (read-only, not its own) is left unlocked with a
        warning: no second daemon can record there either, and storage reports the fault in its metrics."""
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            # Readable by all: a one-shot command run as another user must see that a daemon holds it.
            fd = os.open(lock_path(self.base), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError as exc:
            if not lock_path(self.base).exists():
                log.warning("cannot lock %s against a second daemon: %s", self.base, exc.strerror or exc)
                return
            log.warning(
                "cannot lock %s against a second daemon: %s is not this user's (left by a run as root? chown "
                "it to the service's user, or remove it)", self.base, lock_path(self.base),
            )  # fmt: skip
            return
        except OSError as exc:
            log.warning("cannot lock %s against a second daemon: %s", self.base, exc.strerror or exc)
            return
        deadline = clock() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if not isinstance(exc, BlockingIOError):  # ENOLCK on some network filesystems
                    os.close(fd)
                    log.warning("cannot lock %s against a second daemon: %s", self.base, exc.strerror or exc)
                    return
                if clock() >= deadline:
                    holder = lock_holder(fd)
                    os.close(fd)
                    who = f"camera-recorder (pid {holder})" if holder else "another camera-recorder"
                    raise FolderInUse(
                        f"{who} already records into {self.base}: stop it, or give this one another "
                        "recording.base_directory"
                    ) from None
                # Polled, not blocked on: flock has no timeout, and the predecessor needs only a moment.
                time.sleep(0.05)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_holder(fd: int) -> int | None:
    """The pid holding an flock on `fd`'s file, as the kernel lists it in /proc/locks; None if unknown."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = PROC_LOCKS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 5476 fe:00:2149381 0 EOF"; blocked waiters carry "->" first.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode and fields[4].isdigit():
            return int(fields[4])
    return None


def daemon_running(base: Path) -> bool:
    """True while a daemon holds `base`'s lock. Tested with a shared lock taken and dropped at once; a
    daemon starting in that instant waits for it (`TAKE_OVER_WAIT_SECONDS`)."""
    try:
        fd = os.open(lock_path(base), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # never locked here
    except OSError:
        return True  # cannot tell: taken as held, so nothing a daemon may be writing is touched
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


def open_segments(
    base: Path, cameras: Iterable[str], *, stall_timeout: float = 0.0, now: float | None = None
) -> frozenset[Path]:
    """The segments of `cameras` that a running daemon may still be writing; empty when none runs."""
    if not daemon_running(base):
        return frozenset()
    now = time.time() if now is None else now
    recent = max(RECENTLY_WRITTEN_SECONDS, 2 * stall_timeout)
    found: set[Path] = set()
    for camera in cameras:
        folder = base / camera
        newest: tuple[float, str] | None = None
        try:
            with os.scandir(folder) as entries:
                for item in entries:
                    parsed = parse_segment_name(item.name)
                    if parsed is None or parsed.camera != camera:
                        continue
                    if newest is None or parsed.start > newest[0]:
                        newest = (parsed.start, item.name)
                    try:
                        if now - item.stat(follow_symlinks=False).st_mtime < recent:
                            found.add(folder / item.name)
                    except OSError:
                        continue  # gone since the listing
        except OSError:
            continue  # no folder, or unreadable: nothing of it can be touched anyway
        if newest is not None:
            found.add(folder / newest[1])
    return frozenset(found)
