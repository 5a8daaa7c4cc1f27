"""The values the retention rooms pass each other: disk usage, index entries, deleted files, a pass's report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

DAY = 86400.0


class DiskUsage(NamedTuple):
    """One statvfs reading of the filesystem holding the recordings."""

    size: int  # f_blocks * f_frsize
    avail: int  # f_bavail * f_frsize: what the recorder may still use
    block_size: int  # f_frsize, the unit files are allocated in

    @property
    def used(self) -> int:
        return self.size - self.avail

    @property
    def used_ratio(self) -> float:
        return 1.0 - self.avail / self.size if self.size > 0 else 1.0


class Entry(NamedTuple):
    """One indexed segment; tuples sort by start time, then name, which is the deletion order."""

    start: float  # Unix time from the file name
    name: str  # file name inside <base>/<camera>/
    size: int  # st_size in bytes
    duration: float  # seconds; 0.0 when unknown (found by a scan rather than reported by FFmpeg)


class DeletedFile(NamedTuple):
    """A file a retention pass deleted (or, in a dry run, would have deleted)."""

    camera: str
    name: str
    reason: str  # a vocabulary.DeletionReason
    size: int  # bytes
    start: float  # Unix time from the file name


@dataclass(frozen=True)
class RetentionReport:
    """What one retention pass did: each file deleted (or that would be) and the totals."""

    trigger: str  # a vocabulary.RetentionTrigger
    action: str | None  # a vocabulary.AlertAction, or None for the trigger's own policies
    dry_run: bool
    base_directory: Path
    started_at: float  # Unix time
    finished_at: float  # Unix time
    files: tuple[DeletedFile, ...]  # oldest first within each policy
    failed: tuple[tuple[str, str, str], ...]  # (camera, name, error) of files that could not be deleted
    used_ratio_before: float | None  # None when the filesystem could not be read
    used_ratio_after: float | None
    recording_allowed: bool
    orphans: frozenset[str] = frozenset()  # cameras whose folders were indexed though not configured

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def path(self, deleted: DeletedFile) -> Path:
        """The full path of a file in this report."""
        return self.base_directory / deleted.camera / deleted.name

    def totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Files and bytes by (camera, reason)."""
        return totals(self.files)


def allocated(size: int, block_size: int) -> int:
    """Bytes a file of `size` occupies, rounded up to whole blocks (what deleting it gives back)."""
    return -(-size // block_size) * block_size


def group_by_camera(files: Iterable[DeletedFile]) -> dict[str, list[DeletedFile]]:
    """The files of each camera, in the order given."""
    out: dict[str, list[DeletedFile]] = {}
    for f in files:
        out.setdefault(f.camera, []).append(f)
    return out


def totals(files: Iterable[DeletedFile]) -> dict[tuple[str, str], tuple[int, int]]:
    """Files and bytes by (camera, reason)."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for f in files:
        n, size = out.get((f.camera, f.reason), (0, 0))
        out[(f.camera, f.reason)] = (n + 1, size + f.size)
    return out


def human_bytes(n: float) -> str:
    """Binary units, one decimal: 1.5 GiB."""
    if abs(n) < 1024:
        return f"{n:.0f} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"
