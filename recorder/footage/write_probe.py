"""Does writing into a folder work right now? A real write, because only a write tells.

`os.access` is no answer: root passes every access check, yet a read-only mount, a full disk or a
failing device refuse the write. So the probe creates, writes, fsyncs and removes a small hidden file;
every OSError (EROFS, EACCES, EPERM, EIO, ENOSPC, EDQUOT, ENOENT, ELOOP ...) is a failed probe.

Not every failed write is the folder's fault: `is_resource_error` tells the machine's passing conditions
(out of descriptors, memory, processes) from faults of the recordings folder or a bug.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import threading
from pathlib import Path

# Every probe file's name starts with this (a dot: no segment name does, so every scanner passes it by).
PROBE_NAME = ".camera-recorder-probe"
# The storage worker and each supervisor probe the same camera folder, maybe at once: one shared name would
# let one remove the other's file, whose own unlink then fails (ENOENT) as if the folder refused writes.
_probe_counter = itertools.count()
_PROBE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_PROBE_BYTES = b"camera-recorder write probe\n"

# Out of descriptors (per process, system-wide), memory, processes or buffers: they come back by
# themselves, so what failed is retried, and nothing is concluded about the folder or the camera.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.ENOBUFS})


def is_resource_error(exc: BaseException) -> bool:
    """Out of descriptors, memory or processes: a condition of the machine that passes by itself."""
    return isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS)


def probe_folder(folder: Path) -> OSError | None:
    """Write, fsync and remove a probe file in `folder`; the error that stopped it, or None when it worked."""
    path = Path(folder) / unique_probe_name()
    created = False
    try:
        fd = os.open(path, _PROBE_FLAGS, 0o600)
        created = True
        try:
            os.write(fd, _PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(path)
        return None
    except OSError as exc:
        if created:
            try:
                os.unlink(path)
            except OSError:
                pass  # the folder is already reported as unwritable
        return exc


def unique_probe_name() -> str:
    """A probe file name no other probe uses now: the prefix, then process, thread and a counter."""
    return f"{PROBE_NAME}-{os.getpid()}-{threading.get_ident()}-{next(_probe_counter)}"


def is_probe_name(name: str) -> bool:
    """Whether a file name is a write probe's (left behind only by a crash between create and unlink)."""
    return name.startswith(PROBE_NAME)


def camera_folder_problem(folder: Path) -> OSError | None:
    """Make sure a camera's folder exists as a real folder and takes writes; the error when it does not.

    A camera folder that is a symlink is refused (ELOOP): retention never follows one, so recording into
    it would fill a disk nothing cleans.
    """
    folder = Path(folder)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            st = os.lstat(folder)
        except OSError as exc:
            return exc
    except OSError as exc:
        return exc
    if stat.S_ISLNK(st.st_mode):
        why = "the camera folder is a symlink, which is neither recorded into nor cleaned"
        return OSError(errno.ELOOP, why, str(folder))
    if not stat.S_ISDIR(st.st_mode):
        return OSError(errno.ENOTDIR, "the camera folder is not a folder", str(folder))
    return probe_folder(folder)


def describe(exc: OSError) -> str:
    """One line for the log and the camera's last_error: the reason and the path."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason
