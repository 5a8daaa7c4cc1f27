"""The camera folder around each FFmpeg run: before a start it must take writes (and, after a full disk
retention could not cure, have room); after a run that ended by itself, storage causes are dealt with."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path

from recorder.domain.vocabulary import RestartReason
from recorder.footage.segments import folder_names
from recorder.footage.write_probe import camera_folder_problem, describe, is_resource_error

# Waiting for a new second before a start bounds at this; a larger gap means the clock stepped back, and the
# run takes fresh names instead (a suffix) rather than wait for the clock to pass the newest name.
NAME_COLLISION_MAX_WAIT = 3.0
# A folder that refuses writes is probed this often; recording resumes within about this long once it works.
STORAGE_PROBE_EVERY = 1.0
# After ENOSPC that retention could not cure, FFmpeg starts again only once this much is free: a start into
# a nearly full disk would only leave another empty file behind.
DISK_FULL_RESUME_BYTES = 1 << 20


def available_bytes(folder: Path) -> int:
    """Free bytes for an unprivileged writer in `folder`'s filesystem; 0 when statvfs fails."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


class StorageGate:
    """One camera's folder checks; only the supervisor thread calls it."""

    def __init__(
        self,
        *,
        on_write_result: Callable[[str | None], None],
        free_space: Callable[[], bool],
        log: logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self._on_write_result = on_write_result  # told each probe's error line, or None when it worked
        self._free_space = free_space  # asked to free space after ENOSPC; True when anything was deleted
        self._log = log
        self._disk_full_uncured = False  # ENOSPC that retention could not cure: wait for free space

    def wait_until_writable(
        self,
        folder: Path,
        *,
        keep_trying: Callable[[], bool],
        refused: Callable[[str], None],
        sleep: Callable[[float], None],
    ) -> None:
        """Before a start: the camera folder must exist, be a real folder and take a write (and have room).

        Until it does, `refused` hears each new error (the camera goes to storage_error) and the folder is
        probed every STORAGE_PROBE_EVERY; the wait ends when `keep_trying` says no (stop, pause, unplug).
        """
        reported: str | None = None
        while keep_trying():
            error = self._problem(folder)
            if error is None:
                if reported is not None:
                    self._on_write_result(None)
                    self._log.info("camera folder %s takes writes again", folder)
                return
            self._on_write_result(error)
            if error != reported:
                reported = error
                refused(error)
            sleep(STORAGE_PROBE_EVERY)

    def name_suffix_for_start(self, folder: Path, camera_id: str, now: float, sleep: Callable[[float], None]) -> int:
        """Before a start: the suffix of names no segment in `folder` has (0, the usual names, unless the clock
        is behind the newest name); a start in the same second as the newest segment waits for the next."""
        names = folder_names(folder, camera_id)
        wait = names.seconds_until_unused_name(now)
        if wait > NAME_COLLISION_MAX_WAIT:
            suffix = names.highest_suffix + 1
            self._log.warning(
                "the clock is %.0f s behind the newest segment name: new segments are named ...-%d so that none "
                "is overwritten", wait, suffix,
            )  # fmt: skip
            return suffix
        if wait > 0:
            sleep(wait)
        return 0

    def _problem(self, folder: Path) -> str | None:
        problem = camera_folder_problem(folder)
        if problem is not None and is_resource_error(problem):
            raise problem  # out of descriptors is no storage fault: the supervision loop's top counts it
        if problem is None and self._disk_full_uncured:
            if available_bytes(folder) >= DISK_FULL_RESUME_BYTES:
                self._disk_full_uncured = False
            else:
                # Retention may free space meanwhile (its own schedule), or an operator does.
                problem = OSError(errno.ENOSPC, "disk full, nothing of this recorder left to delete", str(folder))
        return None if problem is None else describe(problem)

    def escalate_after(self, reason: str, folder: Path) -> bool:
        """After a run that ended by itself for `reason`: deal with storage causes; False when the backoff
        should not grow (the cause was dealt with, or the next start waits for the folder)."""
        # Any failed write (EROFS, EACCES, EIO, ENOSPC...) shows here whatever FFmpeg printed: the next start
        # waits in storage_error until the folder takes writes again, without a growing backoff.
        problem = camera_folder_problem(folder)
        if problem is not None and is_resource_error(problem):
            raise problem
        if problem is not None:
            self._on_write_result(describe(problem))
            return False
        if reason != RestartReason.DISK_FULL:
            return True
        if self._free_space():
            self._log.info("disk was full: retention freed space, FFmpeg restarts at once")
            return False
        if available_bytes(folder) < DISK_FULL_RESUME_BYTES:
            self._disk_full_uncured = True  # the next start waits in storage_error for space
            return False
        return True
