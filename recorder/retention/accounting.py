"""What retention has done, counted, and the storage snapshot built from the index and those counts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from recorder.retention.index import SegmentIndex
from recorder.retention.model import DeletedFile, DiskUsage
from recorder.retention.planner import RetentionSettings
from recorder.snapshots import CameraStorage, StorageSnapshot
from recorder.vocabulary import DeletionReason, RetentionTrigger


class FilesystemState(NamedTuple):
    """The last readings of the recordings folder's filesystem."""

    usage: DiskUsage | None  # last statvfs reading; None before the first or after a failure
    writable: bool | None  # last write probe; None before the first
    checked_at: float | None  # Unix time of the last check


class RetentionCounters:
    """Files and bytes deleted by (camera, reason) and passes by trigger, every key present from the start."""

    def __init__(self, camera_ids: Iterable[str]) -> None:
        cameras = tuple(camera_ids)
        self.deleted_files = {(c, str(r)): 0 for c in cameras for r in DeletionReason}
        self.deleted_bytes = {(c, str(r)): 0 for c in cameras for r in DeletionReason}
        self.runs = {str(t): 0 for t in RetentionTrigger}
        self.last_run: float | None = None  # Unix time the last (non dry-run) pass finished

    def count_deleted(self, files: Iterable[DeletedFile]) -> None:
        for f in files:
            self.deleted_files[(f.camera, f.reason)] += 1
            self.deleted_bytes[(f.camera, f.reason)] += f.size

    def count_run(self, trigger: str, finished_at: float) -> None:
        self.runs[trigger] += 1
        self.last_run = finished_at


def build_snapshot(
    base: Path,
    index: SegmentIndex,
    settings: RetentionSettings,
    filesystem: FilesystemState,
    counters: RetentionCounters,
    *,
    recording_allowed: bool,
    min_free_unmet: bool,
    default_max_age: float | None,
    # Transcoding shrinks footage with age: (usable bytes, write rate) -> seconds; None: usable / rate.
    capacity_model: Callable[[float, float], float] | None = None,
) -> StorageSnapshot:
    """The immutable snapshot of everything storage knows now (called with the storage lock held)."""
    cameras = {}
    for cam, ix in index.cameras.items():
        entries = ix.entries
        cameras[cam] = CameraStorage(
            camera=cam,
            files=len(entries),
            bytes=ix.bytes,
            oldest_start=entries[0].start if entries else None,
            newest_start=entries[-1].start if entries else None,
            write_rate_bytes_per_second=ix.rate,
            max_age_seconds=settings.max_age[cam],
        )
    rate = sum(c.write_rate_bytes_per_second for c in cameras.values())
    usage = filesystem.usage
    capacity = None
    if usage is not None and rate > 0:
        # What the recorder may use: everything below the deletion threshold except what other data occupies.
        recordings = sum(c.bytes for c in cameras.values())
        usable = settings.threshold * usage.size - (usage.used - recordings)
        capacity = capacity_model(max(usable, 0.0), rate) if capacity_model else max(usable, 0.0) / rate
    return StorageSnapshot(
        path=str(base),
        cameras=MappingProxyType(cameras),
        filesystem_size_bytes=usage.size if usage else None,
        filesystem_avail_bytes=usage.avail if usage else None,
        used_ratio=usage.used_ratio if usage else None,
        writable=filesystem.writable,
        checked_at=filesystem.checked_at,
        write_rate_bytes_per_second=rate,
        capacity_seconds=capacity,
        recording_allowed=recording_allowed,
        max_age_seconds=default_max_age,
        disk_usage_threshold_ratio=settings.threshold,
        low_space_warning_ratio=settings.low_space,
        pressure_target_ratio=settings.target,
        min_free_unmet=min_free_unmet,
        deleted_files=MappingProxyType(dict(counters.deleted_files)),
        deleted_bytes=MappingProxyType(dict(counters.deleted_bytes)),
        runs=MappingProxyType(dict(counters.runs)),
        last_run_timestamp=counters.last_run,
    )
