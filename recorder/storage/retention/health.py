"""The recordings folder's health as the storage publishes it: statvfs readings, the write probe, and the
write failures the supervisors meet in their camera folders (`storage_writable` follows them at once)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from recorder.storage.retention.filesystem import RecordingsFolder
from recorder.storage.retention.model import DiskUsage
from recorder.storage.retention.state import StorageState

log = logging.getLogger("recorder.storage")


class FolderWatch:
    """Reads the filesystem and probes the folder into the shared state, logging each change once."""

    def __init__(self, state: StorageState, folder: RecordingsFolder, fs_usage: Callable[[Path], DiskUsage]) -> None:
        self._state = state
        self._folder = folder
        self._fs_usage = fs_usage
        self._usage_failed = False  # the last statvfs failed (already logged)
        # Write failures the supervisors met in their camera folders since the last probe: camera -> error.
        # Guarded by the state's lock.
        self._camera_write_errors: dict[str, str] = {}

    def read_usage(self) -> DiskUsage | None:
        """One statvfs reading; None (logged once per outage) when the filesystem cannot be read."""
        try:
            usage = self._fs_usage(self._state.base)
        except OSError as exc:
            if not self._usage_failed:  # once per outage, not every check
                log.warning("cannot read the filesystem of %s: %s", self._state.base, exc)
            self._usage_failed = True
            return None
        self._usage_failed = False
        return usage

    def refresh(self) -> DiskUsage | None:
        """Read statvfs and run the write probe into the state and the snapshot; returns the reading."""
        state = self._state
        usage = self.read_usage()
        writable = self._folder.probe(state.writable)
        with state.lock:
            previous = state.writable
            state.usage = usage
            state.writable = writable
            if writable:
                self._camera_write_errors.clear()  # every folder took a write just now
            state.checked_at = state.clock()
            state.index.refresh_rates(state.checked_at)  # rates age with the clock, not only with changes
            state.publish_locked()
        if previous is not None and writable != previous:
            if writable:
                log.info("recordings folder %s is writable again", state.base)
            else:
                log.warning("recordings folder %s is not writable", state.base)
        return usage

    def note_write_result(self, camera: str, error: str | None) -> None:
        """A supervisor's own write probe in its camera folder (see Storage.note_write_result)."""
        state = self._state
        if error is None:
            with state.lock:
                had_error = self._camera_write_errors.pop(camera, None) is not None
                others = bool(self._camera_write_errors)
                stale = state.writable is False
            if (had_error or stale) and not others:
                writable = self._folder.probe(state.writable)
                with state.lock:
                    changed = writable != state.writable
                    state.writable = writable
                    state.checked_at = state.clock()
                    state.publish_locked()
                if changed and writable:
                    log.info("recordings folder %s is writable again", state.base)
            return
        with state.lock:
            first = camera not in self._camera_write_errors
            self._camera_write_errors[camera] = error
            was = state.writable
            state.writable = False
            state.checked_at = state.clock()
            state.publish_locked()
        if first and was is not False:
            log.warning("recordings folder %s is not writable (camera %s: %s)", state.base, camera, error)
