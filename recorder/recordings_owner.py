"""Who writes into a recordings folder: the one daemon that owns it, and the segments its FFmpeg have open.

Every writer of a camera folder (the daemon, `--transcode`, `--cleanup`, export) needs the same answer to
"is this segment still being written?", across process boundaries. The daemon holds an exclusive `flock`
on `<base>/.daemon/lock` for its whole life, so a second daemon on the same folder is refused, and lists
the segments its FFmpeg have open in `<base>/.daemon/open-segments.json`. A one-shot command asks
`open_segments()`: nothing is open when no daemon holds the lock; while one does, its list, each camera's
newest segment and any segment written to lately are open. The last two cover the moments the list
trails FFmpeg (a segment opened since the daemon last wrote it, a name from a clock stepped back that
does not sort last) at the cost of leaving one more segment for the next run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from recorder.segments import parse_segment_name

log = logging.getLogger(__name__)

OWNER_FOLDER = ".daemon"  # a dot name is never a camera id (ids are letters, digits, _ and -)
LOCK_NAME = "lock"
OPEN_LIST_NAME = "open-segments.json"
# A segment FFmpeg writes grows at least every cluster/fragment (about a second); one untouched for a
# minute is not being written, whatever its name says.
RECENTLY_WRITTEN_SECONDS = 60.0
# A daemon that is just stopping (systemd restarting it) still holds the lock for the seconds FFmpeg takes
# to finalize; its successor waits that long before it gives up.
TAKE_OVER_WAIT_SECONDS = 2.0


class FolderInUse(RuntimeError):
    """Another daemon records into this recordings folder."""


def owner_folder(base: Path) -> Path:
    return base / OWNER_FOLDER


class DaemonLock:
    """The daemon's exclusive hold on a recordings folder; the kernel drops it with the process."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._fd: int | None = None
        self._published: tuple[str, ...] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, wait: float = TAKE_OVER_WAIT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        """Take the folder or raise FolderInUse naming the daemon that has it.

        A folder the daemon cannot write to at all (read-only, full, not ours) is left unlocked with a
        warning: no second daemon can record there either, and storage reports the fault in its metrics."""
        folder = owner_folder(self.base)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            log.warning("cannot lock %s against a second daemon: %s", self.base, exc.strerror or exc)
            return
        deadline = clock() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= deadline:
                    holder = _read_pid(fd)
                    os.close(fd)
                    who = f"camera-recorder (pid {holder})" if holder else "another camera-recorder"
                    raise FolderInUse(
                        f"{who} already records into {self.base}: stop it, or give this one another "
                        "recording.base_directory"
                    ) from None
                # Polled, not blocked on: flock has no timeout, and the predecessor needs only a moment.
                time.sleep(0.05)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for the refusal's message
        self._fd = fd

    def publish_open(self, paths: Iterable[Path]) -> None:
        """List the segments FFmpeg has open now for the one-shot commands; written only when it changes."""
        if self._fd is None:
            return
        names = tuple(sorted(f"{path.parent.name}/{path.name}" for path in paths))
        if names == self._published:
            return
        target = owner_folder(self.base) / OPEN_LIST_NAME
        temporary = target.with_name(f".{OPEN_LIST_NAME}.{os.getpid()}")
        try:
            temporary.write_text(json.dumps({"pid": os.getpid(), "open": list(names)}) + "\n")
            os.replace(temporary, target)
        except OSError as exc:
            # The one-shot commands fall back on "newest and lately written" segments: say it once a change.
            log.warning("cannot list the open segments in %s: %s", target, exc.strerror or exc)
            return
        self._published = names

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            (owner_folder(self.base) / OPEN_LIST_NAME).unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        self._published = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isascii() and text.isdigit() else None


def daemon_running(base: Path) -> bool:
    """True while a daemon holds `base`'s lock. Tested with a shared lock taken and dropped at once; a
    daemon starting in that instant waits for it (`TAKE_OVER_WAIT_SECONDS`)."""
    try:
        fd = os.open(owner_folder(base) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # never locked here (or unreadable, and then no daemon could write its list either)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False


def open_segments(base: Path, cameras: Iterable[str], *, now: float | None = None) -> frozenset[Path]:
    """The segments of `cameras` that a running daemon may still be writing; empty when none runs."""
    if not daemon_running(base):
        return frozenset()
    now = time.time() if now is None else now
    found: set[Path] = set()
    try:
        listed = json.loads((owner_folder(base) / OPEN_LIST_NAME).read_text()).get("open", [])
    except (OSError, ValueError, AttributeError):
        listed = []
    for entry in listed:
        if isinstance(entry, str) and entry.count("/") == 1:
            found.add(base / entry)
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
                        if now - item.stat(follow_symlinks=False).st_mtime < RECENTLY_WRITTEN_SECONDS:
                            found.add(folder / item.name)
                    except OSError:
                        continue  # gone since the listing
        except OSError:
            continue  # no folder, or unreadable: nothing of it can be touched anyway
        if newest is not None:
            found.add(folder / newest[1])
    return frozenset(found)
