"""What retention has done, counted, and the storage snapshot built from the index and those counts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from recorder.domain.vocabulary import DeletionReason, RetentionTrigger
from recorder.state.snapshots import CameraStorage, StorageSnapshot
from recorder.storage.retention.index import SegmentIndex
from recorder.storage.retention.model import DeletedFile, DiskUsage
from recorder.storage.retention.planner import RetentionSettings


class FilesystemState(NamedTuple):
    """The last readings of the recordings folder's filesystem."""

    usage: DiskUsage | None  # last statvfs reading; None before the first or after a failure
    writable: bool | None  # last write probe; None before the first
    checked_at: float | None  # Unix time of the last check


class RetentionCounters:
    """Files and bytes deleted by (camera, reason) and passes by trigger, every key present from the start.

    Unconfigured cameras' deletions are counted by reason only: their names come from the disk, unbounded.
    """

    def __init__(self, camera_ids: Iterable[str]) -> None:
        cameras = tuple(camera_ids)
        self.deleted_files = {(c, str(r)): 0 for c in cameras for r in DeletionReason}
        self.deleted_bytes = {(c, str(r)): 0 for c in cameras for r in DeletionReason}
        self.orphaned_deleted_files = {str(r): 0 for r in DeletionReason}
        self.orphaned_deleted_bytes = {str(r): 0 for r in DeletionReason}
        self.runs = {str(t): 0 for t in RetentionTrigger}
        self.last_run: float | None = None  # Unix time the last (non dry-run) pass finished
        self.changes = 0  # bumped on every count, so a snapshot copies the counts only when they changed
        self._cameras = frozenset(cameras)
        # (camera, reason) -> (files, bytes) of cameras a reload removed (carry_from).
        self._retired: dict[tuple[str, str], tuple[int, int]] = {}

    def count_deleted(self, files: Iterable[DeletedFile]) -> None:
        for f in files:
            key = (f.camera, f.reason)
            if key in self.deleted_files:
                self.deleted_files[key] += 1
                self.deleted_bytes[key] += f.size
            else:
                self.orphaned_deleted_files[f.reason] += 1
                self.orphaned_deleted_bytes[f.reason] += f.size
        self.changes += 1

    def count_run(self, trigger: str, finished_at: float) -> None:
        self.runs[trigger] += 1
        self.last_run = finished_at
        self.changes += 1

    def copy(self) -> RetentionCounters:
        """The counts as they are now (for carry_from's `since`)."""
        twin = RetentionCounters(self._cameras)
        twin.deleted_files, twin.deleted_bytes = dict(self.deleted_files), dict(self.deleted_bytes)
        twin.orphaned_deleted_files = dict(self.orphaned_deleted_files)
        twin.orphaned_deleted_bytes = dict(self.orphaned_deleted_bytes)
        twin.runs, twin.last_run, twin._retired = dict(self.runs), self.last_run, dict(self._retired)
        return twin

    def carry_from(self, earlier: RetentionCounters, since: RetentionCounters | None = None) -> None:
        """Go on from the counts of the accounting a reload replaced, so no counter reads less after it;
        with `since`, only what `earlier` counted after that copy of it (its last pass, while it stopped).

        A camera the new configuration no longer has keeps its counts here, unexposed (its series end, as its
        supervisor's do), and gets them back should a later reload add it again."""
        base = since or RetentionCounters(())
        for mine, theirs, before in (
            (self.deleted_files, earlier.deleted_files, base.deleted_files),
            (self.deleted_bytes, earlier.deleted_bytes, base.deleted_bytes),
        ):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value - before.get(key, 0)
        if since is None:
            self._retired.update(earlier._retired)
        for key in [k for k in self.deleted_files if k[0] not in self._cameras]:
            self._retired[key] = (self.deleted_files.pop(key), self.deleted_bytes.pop(key))
        for key in [k for k in self._retired if k[0] in self._cameras]:
            files, size = self._retired.pop(key)
            self.deleted_files[key] += files
            self.deleted_bytes[key] += size
        for mine_by_word, theirs_by_word, before_by_word in (
            (self.orphaned_deleted_files, earlier.orphaned_deleted_files, base.orphaned_deleted_files),
            (self.orphaned_deleted_bytes, earlier.orphaned_deleted_bytes, base.orphaned_deleted_bytes),
            (self.runs, earlier.runs, base.runs),
        ):
            for word, value in theirs_by_word.items():
                mine_by_word[word] = mine_by_word.get(word, 0) + value - before_by_word.get(word, 0)
        if earlier.last_run is not None and (self.last_run is None or earlier.last_run > self.last_run):
            self.last_run = earlier.last_run
        self.changes += 1


class SnapshotBuilder:
    """Builds the immutable storage snapshot, reusing what did not change since the last one.

    add_segment publishes a snapshot for every completed segment, yet one segment changes one camera: a view
    per camera and copies of the counters rebuilt every time were most of that call's cost.
    """

    def __init__(
        self,
        base: Path,
        settings: RetentionSettings,
        *,
        default_max_age: float | None,
        # Transcoding shrinks footage with age: (usable bytes, write rate) -> seconds; None: usable / rate.
        capacity_model: Callable[[float, float], float] | None = None,
    ) -> None:
        self._path = str(base)
        self._settings = settings
        self._default_max_age = default_max_age
        self._capacity_model = capacity_model
        self._cameras: Mapping[str, CameraStorage] = MappingProxyType({})
        self._orphans: Mapping[str, CameraStorage] = MappingProxyType({})
        empty: Mapping[str, int] = MappingProxyType({})
        self._counted: tuple[
            int,
            Mapping[tuple[str, str], int],
            Mapping[tuple[str, str], int],
            Mapping[str, int],
            Mapping[str, int],
            Mapping[str, int],
        ]
        self._counted = (-1, MappingProxyType({}), MappingProxyType({}), empty, empty, empty)

    def build(
        self,
        index: SegmentIndex,
        filesystem: FilesystemState,
        counters: RetentionCounters,
        *,
        recording_allowed: bool,
        min_free_unmet: bool,
    ) -> StorageSnapshot:
        """The snapshot of everything storage knows now (called with the storage lock held)."""
        settings = self._settings
        cameras, orphans = self._camera_views(index)
        rate = 0.0
        recordings = 0
        for c in cameras.values():
            rate += c.write_rate_bytes_per_second
            recordings += c.bytes
        for c in orphans.values():
            recordings += c.bytes  # retention may free it (first), so it is space the recorder may use
        usage = filesystem.usage
        capacity = None
        if usage is not None and rate > 0:
            # What the recorder may use: everything below the deletion threshold except what other data occupies.
            usable = max(settings.threshold * usage.size - (usage.used - recordings), 0.0)
            capacity = self._capacity_model(usable, rate) if self._capacity_model else usable / rate
        if self._counted[0] != counters.changes:
            self._counted = (
                counters.changes,
                MappingProxyType(dict(counters.deleted_files)),
                MappingProxyType(dict(counters.deleted_bytes)),
                MappingProxyType(dict(counters.runs)),
                MappingProxyType(dict(counters.orphaned_deleted_files)),
                MappingProxyType(dict(counters.orphaned_deleted_bytes)),
            )
        _, deleted_files, deleted_bytes, runs, orphaned_files, orphaned_bytes = self._counted
        return StorageSnapshot(
            path=self._path,
            cameras=cameras,
            filesystem_size_bytes=usage.size if usage else None,
            filesystem_avail_bytes=usage.avail if usage else None,
            used_ratio=usage.used_ratio if usage else None,
            writable=filesystem.writable,
            checked_at=filesystem.checked_at,
            write_rate_bytes_per_second=rate,
            capacity_seconds=capacity,
            recording_allowed=recording_allowed,
            max_age_seconds=self._default_max_age,
            disk_usage_threshold_ratio=settings.threshold,
            low_space_warning_ratio=settings.low_space,
            pressure_target_ratio=settings.target,
            min_free_unmet=min_free_unmet,
            deleted_files=deleted_files,
            deleted_bytes=deleted_bytes,
            runs=runs,
            last_run_timestamp=counters.last_run,
            orphans=orphans,
            orphaned_deleted_files=orphaned_files,
            orphaned_deleted_bytes=orphaned_bytes,
        )

    def _camera_views(self, index: SegmentIndex) -> tuple[Mapping[str, CameraStorage], Mapping[str, CameraStorage]]:
        """The configured cameras' views and the orphans'; the previous objects where nothing changed."""
        orphan_ids = index.orphans
        if orphan_ids or self._orphans:
            self._orphans = self._views(index, orphan_ids, self._orphans, configured=False)
        self._cameras = self._views(index, index.configured, self._cameras, configured=True)
        return self._cameras, self._orphans

    def _views(
        self, index: SegmentIndex, ids: Iterable[str], previous: Mapping[str, CameraStorage], *, configured: bool
    ) -> Mapping[str, CameraStorage]:
        """The views of `ids`: `previous` itself when none changed, else a new mapping reusing unchanged views."""
        cameras: dict[str, CameraStorage] = {}
        changed = False
        for cam in ids:
            ix = index.cameras[cam]
            entries = ix.entries
            oldest = entries[0].start if entries else None
            newest = entries[-1].start if entries else None
            view = previous.get(cam)
            if (
                view is None
                or view.files != len(entries)
                or view.bytes != ix.bytes
                or view.oldest_start != oldest
                or view.newest_start != newest
                or view.write_rate_bytes_per_second != ix.rate
            ):
                changed = True
                view = CameraStorage(
                    camera=cam,
                    files=len(entries),
                    bytes=ix.bytes,
                    oldest_start=oldest,
                    newest_start=newest,
                    write_rate_bytes_per_second=ix.rate,
                    max_age_seconds=self._settings.max_age[cam] if configured else self._settings.orphan_max_age,
                    configured=configured,
                )
            cameras[cam] = view
        if changed or len(cameras) != len(previous):
            return MappingProxyType(cameras)
        return previous
