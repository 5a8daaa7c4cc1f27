"""What the storage knows now, the two locks that guard it, and the snapshot published from it.

`lock` guards the index, the counters and the filesystem readings and is only ever held for short,
syscall-free work, so the supervisors' add_segment never waits long. `work_lock` serialises the slow work
(scans, retention passes); add_segment never takes it. Deletions happen outside `lock`: victims are planned
from a copy of the index, unlinked, and only then removed from the index.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from recorder.state.snapshots import StorageSnapshot
from recorder.storage.retention.accounting import FilesystemState, RetentionCounters, SnapshotBuilder
from recorder.storage.retention.index import SegmentIndex
from recorder.storage.retention.model import DiskUsage
from recorder.storage.retention.planner import RetentionSettings


class StorageState:
    """The shared state of the storage's rooms; every field but the locks is read or written under `lock`."""

    def __init__(
        self,
        base: Path,
        camera_ids: tuple[str, ...],
        settings: RetentionSettings,
        clock: Callable[[], float],
        snapshots: SnapshotBuilder,
    ) -> None:
        self.base = base
        self.camera_ids = camera_ids
        self.settings = settings
        self.clock = clock  # wall clock: segment ages, timestamps
        self.lock = threading.Lock()  # index, counters, filesystem state; short and syscall-free
        self.work_lock = threading.Lock()  # one scan or pass at a time
        self.index = SegmentIndex(base, camera_ids, settings.segment_time)
        self.counters = RetentionCounters(camera_ids)
        self.usage: DiskUsage | None = None  # last statvfs reading; None before the first or after a failure
        self.writable: bool | None = None  # last probe; None before the first
        self.checked_at: float | None = None
        self.recording_allowed = True
        self.min_free_unmet = False  # min_free_minutes asks for more than retention may free (logged once)
        self.scanned = False  # set by the first scan; the worker scans first when nobody did
        # (st_dev, st_ino) of each camera folder as the last scan found it (None: missing): a folder that is a
        # mount point unmounted or mounted since holds other files than the index says.
        self.folder_ids: dict[str, tuple[int, int] | None] = {}
        self._snapshots = snapshots
        self.snapshot = self._build()

    def publish_locked(self) -> None:
        """Replace the published snapshot with one of the state now (`lock` held)."""
        self.snapshot = self._build()

    def _build(self) -> StorageSnapshot:
        return self._snapshots.build(
            self.index,
            FilesystemState(self.usage, self.writable, self.checked_at),
            self.counters,
            recording_allowed=self.recording_allowed,
            min_free_unmet=self.min_free_unmet,
        )
