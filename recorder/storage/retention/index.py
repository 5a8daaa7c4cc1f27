"""Every camera's segments in memory, oldest first, with the totals and write rates the snapshot shows.

Not thread-safe on its own: the storage holds its short, syscall-free lock around every call, so the
supervisors' add_segment never waits on a disk walk.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath

from recorder.footage.segments import parse_segment_name
from recorder.storage.retention.model import DeletedFile, Entry
from recorder.storage.retention.planner import NEWEST_GRACE_SEGMENTS

# The write rate looks at segments that ended in the last hour, or in the last 2.5 segments when they are
# longer than that, so that at least two completed segments are always in the window while recording.
RATE_WINDOW_SECONDS = 3600.0
RATE_WINDOW_SEGMENTS = 2.5
_LAST_NAME = "\U0010ffff"  # sorts after every file name: (start, _LAST_NAME) closes a range at `start`


class CameraIndex:
    """A camera's segments, oldest first, with the running totals the snapshot needs."""

    __slots__ = ("bytes", "entries", "rate")

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries  # sorted by (start, name)
        self.bytes = sum(e.size for e in entries)
        self.rate = 0.0  # bytes/s over the rate window, recomputed on every change


class SegmentIndex:
    """The segments of every camera folder under `base`; add, forget, resync and the write rate.

    `cameras` holds every configured camera (always, empty or not) and, after a scan, every folder of an
    unconfigured camera that holds its segments (`orphans`): a camera removed or renamed in the config.
    Nothing writes into those, so they have no write rate, and a supervisor never reports one.
    """

    def __init__(self, base: Path, camera_ids: tuple[str, ...], segment_time: float) -> None:
        self._base = base
        self._camera_ids = camera_ids
        self._segment_time = segment_time
        self._folders = {cid: str(base / cid) for cid in camera_ids}  # normalised, as os.path.abspath gives
        self.cameras: dict[str, CameraIndex] = {cid: CameraIndex([]) for cid in camera_ids}
        self._orphans: tuple[str, ...] = ()  # kept with `cameras`: every published snapshot reads it
        # While a resync lists the disk, changes reported meanwhile are queued here and replayed on the new
        # index; None when no resync is running.
        self._pending: list[tuple[bool, str, Entry]] | None = None  # (added, camera, entry)

    # Reading

    @property
    def configured(self) -> tuple[str, ...]:
        """The configured cameras, in configuration order."""
        return self._camera_ids

    @property
    def orphans(self) -> tuple[str, ...]:
        """The unconfigured cameras indexed, by name."""
        return self._orphans

    def copies(self) -> dict[str, list[Entry]]:
        """A pointer copy of each camera's list (about 1.6 MB at 200,000 files), to read without the lock."""
        return {cam: list(ix.entries) for cam, ix in self.cameras.items()}

    @property
    def rate(self) -> float:
        """Total write rate over all cameras, bytes per second."""
        return sum(ix.rate for ix in self.cameras.values())

    def between(self, camera: str, start: float, end: float) -> Sequence[Entry]:
        """A camera's entries that may overlap [start, end): those starting inside it plus the one before."""
        ix = self.cameras.get(camera)
        if ix is None:
            return []
        entries = ix.entries
        first = max(0, bisect.bisect_left(entries, (start,)) - 1)
        return entries[first : bisect.bisect_left(entries, (end,), lo=first)]

    def entry_for(self, camera: str, path: Path, size: int, duration: float) -> Entry | None:
        """An index entry for a reported segment, or None when the path is not one of ours to manage."""
        folder = self._folders.get(camera)
        if folder is None:
            return None
        # String operations on the path's normalised text rather than Path objects: this runs for every
        # segment a supervisor reports, and building Paths was a good part of add_segment's cost.
        parent, name = os.path.split(str(path if isinstance(path, PurePath) else Path(path)))
        parsed = parse_segment_name(name)
        if parsed is None or parsed.camera != camera:
            return None
        # Purely lexical, so no syscall: the supervisor builds paths from the same base directory.
        if os.path.abspath(parent) != folder:
            return None
        return Entry(parsed.start, name, int(size), float(duration) if duration > 0 else 0.0)

    # Changes

    def add(self, cam: str, entry: Entry) -> None:
        """Index a segment (or replace the one of the same name: the later report wins)."""
        if self._pending is not None:
            self._pending.append((True, cam, entry))
        self._add(cam, entry)

    def forget(self, cam: str, key: Entry) -> bool:
        """Drop a segment by start and name; False when it was not indexed."""
        if self._pending is not None:
            self._pending.append((False, cam, key))
        return self._remove(cam, key)

    def remove_deleted(self, files: Iterable[DeletedFile]) -> set[str]:
        """Drop files retention deleted; returns the cameras touched."""
        by_camera: dict[str, list[DeletedFile]] = {}
        for f in files:
            by_camera.setdefault(f.camera, []).append(f)
        for cam, deleted in by_camera.items():
            self._remove_many(cam, deleted)
            ix = self.cameras.get(cam)
            if ix is not None and not ix.entries and cam not in self._folders:
                del self.cameras[cam]  # an orphan with nothing left is no camera any more
                self._orphans = tuple(c for c in self._orphans if c != cam)
        return set(by_camera) & set(self._folders)

    def begin_resync(self) -> dict[str, list[Entry]]:
        """Start queueing changes for replay, and return copies of the lists a resync reuses entries from."""
        self._pending = []
        return self.copies()

    def abandon_resync(self) -> None:
        self._pending = None

    def finish_resync(self, fresh: Mapping[str, list[Entry]]) -> dict[str, int]:
        """Replace the lists with what the disk showed, replay what changed meanwhile; old counts by camera.

        `fresh` has every configured camera, and the orphans that hold segments."""
        pending, self._pending = self._pending, None
        before = {cam: len(ix.entries) for cam, ix in self.cameras.items()}
        self.cameras = {cam: CameraIndex(entries) for cam, entries in fresh.items() if entries or cam in self._folders}
        self._orphans = tuple(sorted(cam for cam in self.cameras if cam not in self._folders))
        for added, cam, entry in pending or ():
            if added:
                self._add(cam, entry)
            else:
                self._remove(cam, entry)
        return before

    def refresh_rates(self, now: float, cameras: Iterable[str] | None = None) -> None:
        """Bytes per second of the segments that ended within the rate window, over their total duration."""
        for cam in self._camera_ids if cameras is None else cameras:
            self.cameras[cam].rate = self._rate(self.cameras[cam].entries, now)

    # Internals

    def _add(self, cam: str, entry: Entry) -> None:
        ix = self.cameras[cam]
        entries = ix.entries
        if not entries or (entries[-1].start, entries[-1].name) < (entry.start, entry.name):
            entries.append(entry)  # the usual case: the newest segment
            ix.bytes += entry.size
            return
        i = bisect.bisect_left(entries, (entry.start, entry.name))
        if i < len(entries) and entries[i].name == entry.name:
            ix.bytes += entry.size - entries[i].size
            entries[i] = entry  # reported again (e.g. scanned while open): the later report wins
        else:
            entries.insert(i, entry)
            ix.bytes += entry.size

    def _remove(self, cam: str, key: Entry) -> bool:
        ix = self.cameras.get(cam)
        if ix is None:
            return False
        entries = ix.entries
        i = bisect.bisect_left(entries, (key.start, key.name))
        if i < len(entries) and entries[i].name == key.name:
            ix.bytes -= entries[i].size
            del entries[i]
            return True
        return False

    def _remove_many(self, cam: str, files: list[DeletedFile]) -> None:
        """Drop deleted files from a camera's list; they are nearly always a prefix, so only that is rebuilt."""
        ix = self.cameras.get(cam)
        if ix is None:
            return  # an orphan a resync dropped meanwhile
        names = {f.name for f in files}
        newest = max((f.start for f in files), default=None)
        if newest is None:
            return
        entries = ix.entries
        end = bisect.bisect_right(entries, (newest, _LAST_NAME))
        kept = []
        for e in entries[:end]:
            if e.name in names:
                ix.bytes -= e.size
            else:
                kept.append(e)
        entries[:end] = kept

    def _rate(self, entries: list[Entry], now: float) -> float:
        max_gap = NEWEST_GRACE_SEGMENTS * self._segment_time
        window_start = now - max(RATE_WINDOW_SECONDS, RATE_WINDOW_SEGMENTS * self._segment_time)
        i = bisect.bisect_left(entries, (window_start - max_gap,))
        # Names from the future (a clock set back) are left out rather than walked on every change.
        end = bisect.bisect_right(entries, (now, _LAST_NAME))
        total_bytes = 0
        total_seconds = 0.0
        n = len(entries)
        for j in range(i, end):
            e = entries[j]
            if e.duration > 0:
                seconds = e.duration
            elif j + 1 < n and 0 < entries[j + 1].start - e.start <= max_gap:
                # A scanned segment's duration is unknown; the next segment's start bounds it. Larger gaps
                # are outages, which are no part of the rate.
                seconds = entries[j + 1].start - e.start
            else:
                continue
            if e.start + seconds < window_start:
                continue
            total_bytes += e.size
            total_seconds += seconds
        return total_bytes / total_seconds if total_seconds > 0 else 0.0
