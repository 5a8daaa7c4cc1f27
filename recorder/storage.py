"""Recordings on disk: per-camera accounting of segments, the filesystem check and the retention policies.

Definitions used throughout (the alert rules use the same ones):

- `size`  = f_blocks * f_frsize of the filesystem holding the recordings folder.
- `avail` = f_bavail * f_frsize: what an unprivileged writer such as the recorder may still use (the
  blocks reserved for root count as used).
- `used ratio` = 1 - avail / size.
- A segment's age is measured from the start time its name encodes; its duration is not added, so a
  segment goes once its *first* frame is older than the maximum age.

Threading: `_lock` guards the in-memory index and counters and is only ever held for short, syscall-free
work, so the supervisors' `add_segment` never waits long. `_work_lock` serialises the slow work (scans,
retention passes); it is never taken by `add_segment`. Deletions happen outside `_lock`: victims are
picked from a copy of the index, unlinked, and only then removed from the index.
"""

from __future__ import annotations

import bisect
import collections
import heapq
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from recorder.config import Config, ThresholdAction
from recorder.faults import is_resource_error
from recorder.pressure import bytes_above, next_check_delay, pressure_need
from recorder.segments import CompletedSegment, parse_segment_name
from recorder.snapshots import CameraStorage, StorageSnapshot
from recorder.vocabulary import AlertAction, DeletionReason, RetentionTrigger, values
from recorder.write_probe import PROBE_NAME, probe_folder

log = logging.getLogger(__name__)

# The vocabulary's words as plain tuples, for the counters' keys and the error messages.
ALERT_ACTIONS: tuple[str, ...] = values(AlertAction)
DELETION_REASONS: tuple[str, ...] = values(DeletionReason)
RETENTION_TRIGGERS: tuple[str, ...] = values(RetentionTrigger)
__all__ = ["PROBE_NAME", "Storage", "format_report", "format_stats"]
DAY = 86400.0
# The write rate looks at segments that ended in the last hour, or in the last 2.5 segments when they are
# longer than that, so that at least two completed segments are always in the window while recording.
RATE_WINDOW_SECONDS = 3600.0
RATE_WINDOW_SEGMENTS = 2.5
# A camera's newest segment started less than this many segment times ago may still be open in FFmpeg,
# even when the supervisor's list of open files is momentarily stale.
NEWEST_GRACE_SEGMENTS = 1.5
# A pressure pass that could delete nothing is repeated after this long, not at the fill rate's pace.
STUCK_PRESSURE_RECHECK = 1.0
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


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


def statvfs_usage(path: Path) -> DiskUsage:
    """Read the usage of the filesystem holding `path` with os.statvfs."""
    st = os.statvfs(path)
    return DiskUsage(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, st.f_frsize or 4096)


class _Entry(NamedTuple):
    """One indexed segment; tuples sort by start time, then name, which is the deletion order."""

    start: float  # Unix time from the file name
    name: str  # file name inside <base>/<camera>/
    size: int  # st_size in bytes
    duration: float  # seconds; 0.0 when unknown (found by a scan rather than reported by FFmpeg)


class _CameraIndex:
    """A camera's segments, oldest first, with the running totals the snapshot needs."""

    __slots__ = ("bytes", "entries", "rate")

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries  # sorted by (start, name)
        self.bytes = sum(e.size for e in entries)
        self.rate = 0.0  # bytes/s over the rate window, recomputed on every change


class DeletedFile(NamedTuple):
    """A file a retention pass deleted (or, in a dry run, would have deleted)."""

    camera: str
    name: str
    reason: str  # one of DELETION_REASONS
    size: int  # bytes
    start: float  # Unix time from the file name


@dataclass(frozen=True)
class RetentionReport:
    """What one retention pass did: each file deleted (or that would be) and the totals."""

    trigger: str  # one of RETENTION_TRIGGERS
    action: str | None  # one of ALERT_ACTIONS, or None for the trigger's own policies
    dry_run: bool
    base_directory: Path
    started_at: float  # Unix time
    finished_at: float  # Unix time
    files: tuple[DeletedFile, ...]  # oldest first within each policy
    failed: tuple[tuple[str, str, str], ...]  # (camera, name, error) of files that could not be deleted
    used_ratio_before: float | None  # None when the filesystem could not be read
    used_ratio_after: float | None
    recording_allowed: bool

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
        return _totals(self.files)


class _Request:
    """A pass asked for by another thread, answered by the storage thread."""

    __slots__ = ("action", "done", "dry_run", "error", "report", "trigger")

    def __init__(self, action: str | None, trigger: str, dry_run: bool) -> None:
        self.action = action
        self.trigger = trigger
        self.dry_run = dry_run
        self.done = threading.Event()
        self.report: RetentionReport | None = None  # set before `done`
        self.error: BaseException | None = None  # set before `done` when the pass failed


class Storage:
    """Accounting of the recordings folder and the retention policies that keep it within bounds."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,  # wall clock: segment ages, timestamps
        monotonic: Callable[[], float] = time.monotonic,  # the thread's intervals
        active_paths: Callable[[], Collection[Path]] = lambda: (),  # files FFmpeg has open now
        fs_usage: Callable[[Path], DiskUsage] = statvfs_usage,  # replaced by the benchmark's fake
        # Told when the stop_recording flag flips; called from the storage thread, possibly inside a pass, so
        # it must not start a pass itself.
        on_recording_allowed: Callable[[bool], None] | None = None,
    ) -> None:
        self._config = config
        self._st = config.storage
        self._base = Path(os.path.abspath(config.recording.base_directory))
        self._clock = clock
        self._monotonic = monotonic
        self._active_paths = active_paths
        self._fs_usage = fs_usage
        self._on_recording_allowed = on_recording_allowed
        self._segment_time = float(config.recording.segment_time)
        self._camera_ids = tuple(c.id for c in config.cameras)
        self._max_age: dict[str, float | None] = {}
        for cam in config.cameras:
            days = config.max_age_days(cam)
            self._max_age[cam.id] = days * DAY if days is not None else None
        self._threshold = self._st.disk_usage_threshold / 100.0
        self._target = self._st.effective_pressure_target / 100.0
        self._low_space = self._st.low_space_warning / 100.0

        self._lock = threading.Lock()  # index, counters, filesystem state; short and syscall-free
        self._work_lock = threading.Lock()  # one scan or pass at a time
        self._index: dict[str, _CameraIndex] = {cid: _CameraIndex([]) for cid in self._camera_ids}
        # While a resync lists the disk, changes reported meanwhile are queued here and replayed on the new
        # index; None when no resync is running.
        self._pending: list[tuple[str, str, _Entry]] | None = None
        self._usage: DiskUsage | None = None  # last statvfs reading; None before the first or after a failure
        self._writable: bool | None = None  # last probe; None before the first
        self._checked_at: float | None = None
        self._recording_allowed = True
        self._deleted_files = {(c, r): 0 for c in self._camera_ids for r in DELETION_REASONS}
        self._deleted_bytes = {(c, r): 0 for c in self._camera_ids for r in DELETION_REASONS}
        self._runs = dict.fromkeys(RETENTION_TRIGGERS, 0)
        self._last_run: float | None = None
        self._warned_folders: set[str] = set()  # camera folders already reported as unusable
        self._usage_failed = False  # the last statvfs failed (already logged)
        self._min_free_unmet = False  # min_free_minutes asks for more than retention may free (logged once)
        # Write failures the supervisors met in their camera folders since the last probe: camera -> error.
        self._camera_write_errors: dict[str, str] = {}
        self._pressure_due = False  # a segment completed with the disk under pressure: pass at once
        self._pressure_stuck = False  # pressure passes cannot get under the threshold (logged once)
        self._scanned = False  # set by the first scan; the thread scans first when nobody did

        self._wake = threading.Event()  # set by stop() and request() to interrupt the thread's wait
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._requests: collections.deque[_Request] = collections.deque()
        self._snapshot = self._build_snapshot_locked()

    # -----------------------------------------------------------------------------------------------
    # Reading

    @property
    def base_directory(self) -> Path:
        return self._base

    @property
    def alive(self) -> bool:
        """True while the background thread started by start() runs (the daemon's watchdog reads it)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def snapshot(self) -> StorageSnapshot:
        """The latest published snapshot; no lock, no disk access."""
        return self._snapshot

    def recording_allowed(self) -> bool:
        """False while on_threshold is stop_recording and the disk is above the threshold."""
        return self._recording_allowed

    def capacity_seconds(self) -> float | None:
        """Seconds of recording that fit in the space the recorder may use, at the current total write rate.

        The space the recorder may use is `threshold_ratio * size - (used - recordings)`: everything below
        the deletion threshold except what other data occupies; equivalently recordings + avail minus the
        reserve above the threshold. Divided by the total write rate; None when the rate is zero or unknown
        or the filesystem was not read yet.
        """
        return self._snapshot.capacity_seconds

    # -----------------------------------------------------------------------------------------------
    # Accounting

    def scan(self) -> None:
        """Index every camera folder from disk (done once at start; `resync` repeats it)."""
        self._rescan(initial=True)

    def resync(self) -> None:
        """Re-list every camera folder and replace the index, catching files changed or deleted by others."""
        self._rescan(initial=False)

    def add_segment(self, seg: CompletedSegment) -> bool:
        """Account a segment FFmpeg completed; False (and ignored) when it is not a segment we may manage."""
        entry = self._entry_for(seg.camera, seg.path, seg.size, seg.duration)
        if entry is None:
            log.warning("camera %s: not accounting %s: not a segment in its recordings folder", seg.camera, seg.path)
            return False
        # statvfs costs microseconds: the free-space gauges are never older than one segment, and a disk
        # that fills faster than check_interval is noticed at the segment that brought it under pressure.
        usage = self._read_usage()
        with self._lock:
            if self._pending is not None:
                self._pending.append(("add", seg.camera, entry))
            self._add_locked(seg.camera, entry)
            self._refresh_rate_locked(seg.camera)
            if usage is not None:
                self._usage = usage
            rate = sum(ix.rate for ix in self._index.values())
            self._publish_locked()
        if usage is not None and self._pressure_wanted(usage, rate):
            self._pressure_due = True
            self._wake.set()
        return True

    def _pressure_wanted(self, usage: DiskUsage, rate: float) -> bool:
        return self._st.on_threshold is ThresholdAction.DELETE_OLDEST and self._pressure_need(usage, rate) > 0

    def pressure_check(self) -> bool:
        """statvfs, and a disk_pressure pass when the disk is under pressure (the fast path of check()).

        False when the disk is under pressure and the pass could delete nothing (what is left is protected,
        or other programs' data): the next look need not come as fast as the fill rate would ask.
        """
        usage = self._read_usage()
        if usage is None:
            return False
        with self._lock:
            self._usage = usage
            self._checked_at = self._clock()
            rate = sum(ix.rate for ix in self._index.values())
            self._publish_locked()
        if self._pressure_wanted(usage, rate):
            return self.run_pass("disk_pressure").file_count > 0
        self._update_recording_allowed(usage)
        return True

    def free_space_now(self, timeout: float = 10.0) -> RetentionReport | None:
        """A disk_pressure pass right away, for a writer that met ENOSPC; None when it could not run."""
        try:
            return self.request(None, "disk_pressure", timeout=timeout)
        except (TimeoutError, RuntimeError, OSError) as exc:
            log.warning("retention: the pass for a full disk did not run: %s", exc)
            return None

    def next_pressure_delay(self) -> float:
        """Seconds until the next pressure check: check_interval, or sooner while the disk fills fast."""
        usage = self._usage
        if usage is None:
            return self._st.check_interval
        return next_check_delay(
            size=usage.size,
            avail=usage.avail,
            rate=self._snapshot.write_rate_bytes_per_second,
            threshold=self._threshold,
            check_interval=self._st.check_interval,
        )

    def forget(self, path: Path) -> bool:
        """Drop a file a supervisor removed itself from the accounting; False when it was not indexed."""
        path = Path(path)
        camera = path.parent.name
        parsed = parse_segment_name(path.name)
        if parsed is None or camera not in self._index:
            return False
        key = _Entry(parsed.start, path.name, 0, 0.0)
        with self._lock:
            if self._pending is not None:
                self._pending.append(("forget", camera, key))
            removed = self._remove_locked(camera, key)
            if removed:
                self._refresh_rate_locked(camera)
                self._publish_locked()
        return removed

    # -----------------------------------------------------------------------------------------------
    # Filesystem

    def refresh_filesystem(self) -> None:
        """Read statvfs and run the write probe; updates the snapshot and the recording_allowed flag."""
        usage = self._read_usage()
        writable = self._probe()
        with self._lock:
            previous = self._writable
            self._usage = usage
            self._writable = writable
            if writable:
                self._camera_write_errors.clear()  # every folder took a write just now
            self._checked_at = self._clock()
            for cam in self._camera_ids:
                # Rates age with the clock, not only with changes.
                self._refresh_rate_locked(cam)
            self._publish_locked()
        if previous is not None and writable != previous:
            if writable:
                log.info("recordings folder %s is writable again", self._base)
            else:
                log.warning("recordings folder %s is not writable", self._base)
        self._update_recording_allowed(usage)

    def _read_usage(self) -> DiskUsage | None:
        try:
            usage = self._fs_usage(self._base)
        except OSError as exc:
            if not self._usage_failed:  # once per outage, not every check
                log.warning("cannot read the filesystem of %s: %s", self._base, exc)
            self._usage_failed = True
            return None
        self._usage_failed = False
        return usage

    def _probe(self) -> bool:
        """A real write into the recordings folder and into every existing camera folder: all must work.

        The camera folders count too: a read-only bind mount or wrong owner on one of them stops that camera
        as surely as on the base.
        """
        folders = [self._base]
        for cam in self._camera_ids:
            try:
                st = os.lstat(self._base / cam)
            except FileNotFoundError:
                continue  # created at the camera's first start
            except OSError as exc:
                log.debug("write probe: cannot examine %s: %s", self._base / cam, exc)
                return False
            if not stat.S_ISDIR(st.st_mode):
                return False  # a symlink or a file where the camera folder belongs: refused, as the camera does
            folders.append(self._base / cam)
        for folder in folders:
            error = probe_folder(folder)
            if error is not None and is_resource_error(error):
                # Out of descriptors or memory says nothing about the folder: keep what we knew.
                log.debug("write probe in %s could not run: %s", folder, error)
                return self._writable if self._writable is not None else True
            if error is not None:
                log.debug("write probe in %s failed: %s", folder, error)
                return False
        return True

    def note_write_result(self, camera: str, error: str | None) -> None:
        """A supervisor's own write probe in its camera folder: `storage_writable` follows it at once.

        A failure sets it to 0 now rather than at the next check. A success clears that camera's failure;
        when no camera reports one any more, the whole folder is probed again right here (a few small
        writes), so `storage_writable` returns to 1 within the second the supervisor noticed.
        """
        if error is None:
            with self._lock:
                had_error = self._camera_write_errors.pop(camera, None) is not None
                others = bool(self._camera_write_errors)
                stale = self._writable is False
            if (had_error or stale) and not others:
                writable = self._probe()
                with self._lock:
                    changed = writable != self._writable
                    self._writable = writable
                    self._checked_at = self._clock()
                    self._publish_locked()
                if changed and writable:
                    log.info("recordings folder %s is writable again", self._base)
            return
        with self._lock:
            first = camera not in self._camera_write_errors
            self._camera_write_errors[camera] = error
            was = self._writable
            self._writable = False
            self._checked_at = self._clock()
            self._publish_locked()
        if first and was is not False:
            log.warning("recordings folder %s is not writable (camera %s: %s)", self._base, camera, error)

    # -----------------------------------------------------------------------------------------------
    # Retention

    def run_pass(self, trigger: str, *, action: str | None = None, dry_run: bool = False) -> RetentionReport:
        """Apply the retention policies the trigger (or alert action) calls for and report every file."""
        if trigger not in RETENTION_TRIGGERS:
            raise ValueError(f"unknown retention trigger {trigger!r}; expected one of {RETENTION_TRIGGERS}")
        if action is not None and action not in ALERT_ACTIONS:
            raise ValueError(f"unknown retention action {action!r}; expected one of {ALERT_ACTIONS}")
        if trigger == "alert" and action is None:
            raise ValueError("an alert-triggered pass needs an action: " + ", ".join(ALERT_ACTIONS))
        with self._work_lock:
            return self._run_pass_locked(trigger, action, dry_run)

    def _policies(self, trigger: str, action: str | None) -> tuple[str, ...]:
        if action == "enforce_max_age":
            return ("max_age",)
        if action == "free_space":
            return ("free_space",)
        if trigger == "schedule":
            return ("max_age",)
        if trigger == "disk_pressure":
            return ("disk_pressure",)
        return ("max_age", "disk_pressure")  # manual: what the scheduler and the pressure check would do

    def _run_pass_locked(self, trigger: str, action: str | None, dry_run: bool) -> RetentionReport:
        started = self._clock()
        # One statvfs up front; the bytes to free are computed from it and decremented by what is picked, so
        # a pass over 200,000 files needs no further reads until the check at the end.
        usage = self._read_usage()
        active = self._active_names()
        with self._lock:
            # A pointer copy of each list (about 1.6 MB at 200,000 files) so picking happens without the lock.
            lists = {cam: list(ix.entries) for cam, ix in self._index.items()}
            rate = sum(ix.rate for ix in self._index.values())
        folders_ok = {cam: self._folder_ok(cam) for cam, entries in lists.items() if entries}
        protected = set(active)
        horizon = started - NEWEST_GRACE_SEGMENTS * self._segment_time
        for cam, entries in lists.items():
            if entries and entries[-1].start >= horizon:
                protected.add((cam, entries[-1].name))
        victims: list[DeletedFile] = []
        chosen: set[tuple[str, str]] = set()
        estimated_freed = 0
        for policy in self._policies(trigger, action):
            if policy == "max_age":
                picked = self._pick_max_age(lists, started, protected, chosen, folders_ok)
            else:
                if policy == "disk_pressure" and self._st.on_threshold is ThresholdAction.STOP_RECORDING:
                    continue  # the daemon stops cameras instead; see _update_recording_allowed
                if usage is None:
                    log.warning("retention: %s skipped, the filesystem of %s cannot be read", policy, self._base)
                    continue
                if policy == "free_space":
                    need = bytes_above(usage.size, usage.used, self._low_space, strict=True)
                    reason = "alert"
                else:
                    need = self._pressure_need(usage, rate)
                    reason = "disk_pressure"
                # What earlier policies of this pass picked counts as freed already (matters in dry runs).
                need -= estimated_freed
                picked = self._pick_oldest(lists, need, usage.block_size, reason, protected, chosen, folders_ok)
            if usage is not None:
                estimated_freed += sum(_allocated(f.size, usage.block_size) for f in picked)
            victims.extend(picked)
            chosen.update((f.camera, f.name) for f in picked)

        failed: list[tuple[str, str, str]] = []
        if dry_run:
            done = victims
            usage_after = usage
        else:
            done, failed = self._delete(victims)
            usage_after = self._read_usage()
        finished = self._clock()
        with self._lock:
            if not dry_run:
                self._runs[trigger] += 1
                self._last_run = finished
                if usage_after is not None:
                    self._usage = usage_after
            self._publish_locked()
        allowed = self._update_recording_allowed(usage_after) if not dry_run else self._recording_allowed
        report = RetentionReport(
            trigger=trigger,
            action=action,
            dry_run=dry_run,
            base_directory=self._base,
            started_at=started,
            finished_at=finished,
            files=tuple(done),
            failed=tuple(failed),
            used_ratio_before=usage.used_ratio if usage else None,
            used_ratio_after=usage_after.used_ratio if usage_after else None,
            recording_allowed=allowed,
        )
        if (
            "disk_pressure" in self._policies(trigger, action)
            and not dry_run
            and usage_after is not None
            and self._st.on_threshold is ThresholdAction.DELETE_OLDEST
            and self._pressure_need(usage_after, rate) > 0
        ):
            # Protected, failed or still-open files, other programs' data, or a filesystem that frees space
            # lazily; the next check looks again rather than this pass deleting more on a reading that may lag.
            # Said once per episode: a disk filled by others is checked every second.
            if not self._pressure_stuck:
                self._pressure_stuck = True
                log.warning(
                    "retention: %s is still %.1f%% used after deleting %d files; the next checks try again",
                    self._base,
                    usage_after.used_ratio * 100,
                    len(done),
                )
        elif "disk_pressure" in self._policies(trigger, action) and not dry_run:
            self._pressure_stuck = False
        return report

    def _pressure_need(self, usage: DiskUsage, rate: float) -> int:
        """Bytes the disk_pressure policy must free now (see recorder.pressure); notes an unmet min_free wish."""
        need = pressure_need(
            size=usage.size,
            avail=usage.avail,
            rate=rate,
            threshold=self._threshold,
            target=self._target,
            min_free_minutes=self._st.min_free_minutes,
        )
        # Without a write rate (nothing completed within the rate window) the wish is unknown: keep the last word.
        if rate > 0 and need.min_free_unmet != self._min_free_unmet:
            with self._lock:
                self._min_free_unmet = need.min_free_unmet
                self._publish_locked()
            if need.min_free_unmet:
                # Once per change, not per check: it holds until the write rate drops or the disk grows.
                log.warning(
                    "retention: min_free_minutes=%g at %s/s needs more free space than deleting down to "
                    "pressure_target (%.0f%% used) gives on %s; footage is kept, retention goes no deeper",
                    self._st.min_free_minutes,
                    _human_bytes(rate),
                    self._target * 100,
                    _human_bytes(usage.size),
                )
            else:
                log.info("retention: min_free_minutes fits on %s again", self._base)
        return need.bytes_to_free

    def _pick_max_age(
        self,
        lists: Mapping[str, list[_Entry]],
        now: float,
        protected: set[tuple[str, str]],
        chosen: set[tuple[str, str]],
        folders_ok: Mapping[str, bool],
    ) -> list[DeletedFile]:
        picked: list[DeletedFile] = []
        for cam, entries in lists.items():
            max_age = self._max_age.get(cam)
            if max_age is None or not entries or not folders_ok.get(cam):
                continue
            # Entries sort by start, so the ones older than the cutoff are a prefix.
            end = bisect.bisect_left(entries, (now - max_age,))
            for i in range(end):
                e = entries[i]
                key = (cam, e.name)
                if key not in protected and key not in chosen:
                    picked.append(DeletedFile(cam, e.name, "max_age", e.size, e.start))
        picked.sort(key=lambda f: f.start)  # oldest first across cameras, like the other policies
        return picked

    def _pick_oldest(
        self,
        lists: Mapping[str, list[_Entry]],
        need: int,
        block_size: int,
        reason: str,
        protected: set[tuple[str, str]],
        chosen: set[tuple[str, str]],
        folders_ok: Mapping[str, bool],
    ) -> list[DeletedFile]:
        """Oldest segments across all cameras (a k-way merge) until their allocated size reaches `need`."""
        picked: list[DeletedFile] = []
        if need <= 0:
            return picked
        heap = [(entries[0].start, cam, 0) for cam, entries in lists.items() if entries and folders_ok.get(cam)]
        heapq.heapify(heap)
        freed = 0
        while heap and freed < need:
            start, cam, i = heapq.heappop(heap)
            entries = lists[cam]
            if i + 1 < len(entries):
                heapq.heappush(heap, (entries[i + 1].start, cam, i + 1))
            e = entries[i]
            key = (cam, e.name)
            if key in protected or key in chosen:
                continue
            picked.append(DeletedFile(cam, e.name, reason, e.size, start))
            freed += _allocated(e.size, block_size)
        return picked

    def _delete(self, victims: list[DeletedFile]) -> tuple[list[DeletedFile], list[tuple[str, str, str]]]:
        """Unlink the victims (without holding `_lock`), then drop them from the index and count them."""
        done: list[DeletedFile] = []  # in the order picked: oldest first within each policy
        gone: list[DeletedFile] = []  # vanished or no longer a regular file: dropped from the index, not counted
        failed: list[tuple[str, str, str]] = []
        # Re-read right before unlinking so a segment FFmpeg opened since the pass started is spared.
        active = self._active_names()
        folders: dict[str, int | None] = {}  # camera -> open folder fd, None when it may not be entered
        folder_errors: dict[str, str] = {}  # camera -> why its folder could not be opened
        try:
            for f in victims:
                cam = f.camera
                if cam not in folders:
                    try:
                        folders[cam] = self._open_camera_folder(cam)
                    except OSError as exc:
                        log.warning("camera %s: not deleting in %s: %s", cam, self._base / cam, exc)
                        folders[cam] = None
                        folder_errors[cam] = exc.strerror or str(exc)
                dir_fd = folders[cam]
                if dir_fd is None:
                    failed.append((cam, f.name, f"camera folder: {folder_errors[cam]}"))
                    continue
                if (cam, f.name) in active:
                    continue
                try:
                    st = os.lstat(f.name, dir_fd=dir_fd)
                    if not stat.S_ISREG(st.st_mode):
                        gone.append(f)  # a symlink or something else took its place: never touched
                        continue
                    os.unlink(f.name, dir_fd=dir_fd)
                except FileNotFoundError:
                    gone.append(f)
                    continue
                except OSError as exc:
                    failed.append((cam, f.name, exc.strerror or str(exc)))
                    continue
                done.append(f._replace(size=st.st_size))
                log.debug("camera %s: deleted %s (%s, %d bytes)", cam, f.name, f.reason, st.st_size)
        finally:
            for dir_fd in folders.values():
                if dir_fd is not None:
                    os.close(dir_fd)
        with self._lock:
            for cam, files in _group(done + gone).items():
                self._remove_many_locked(cam, files)
                self._refresh_rate_locked(cam)
            for f in done:
                self._deleted_files[(f.camera, f.reason)] += 1
                self._deleted_bytes[(f.camera, f.reason)] += f.size
        for (cam, reason), (files, size) in _totals(done).items():
            log.info("camera %s: retention deleted %d segments (%s) for %s", cam, files, _human_bytes(size), reason)
        for cam, name, error in failed[:10]:
            log.warning("camera %s: retention could not delete %s: %s", cam, name, error)
        if len(failed) > 10:
            log.warning("retention could not delete %d more files", len(failed) - 10)
        return done, failed

    def _update_recording_allowed(self, usage: DiskUsage | None) -> bool:
        """Recompute the stop_recording flag from a reading and tell the daemon when it flips."""
        if self._st.on_threshold is not ThresholdAction.STOP_RECORDING:
            allowed = True
        elif usage is None:
            allowed = self._recording_allowed  # unknown: keep what we had
        else:
            allowed = not usage.used_ratio > self._threshold
        with self._lock:
            changed = allowed != self._recording_allowed
            self._recording_allowed = allowed
            if changed:
                self._publish_locked()
        if changed:
            if allowed:
                log.info("disk usage is back under the threshold: recording allowed again")
            else:
                log.warning(
                    "disk %s is %.1f%% used, above the %.0f%% threshold: recording stops (on_threshold=%s)",
                    self._base,
                    usage.used_ratio * 100 if usage else float("nan"),
                    self._threshold * 100,
                    self._st.on_threshold.value,
                )
            if self._on_recording_allowed is not None:
                self._on_recording_allowed(allowed)
        return allowed

    # -----------------------------------------------------------------------------------------------
    # Periodic work

    def check(self) -> None:
        """One periodic step: statvfs and write probe, the max_age pass, and a disk_pressure pass if needed."""
        self.refresh_filesystem()
        self.run_pass("schedule")
        usage = self._usage
        if usage is not None and self._st.on_threshold is ThresholdAction.DELETE_OLDEST:
            rate = self._snapshot.write_rate_bytes_per_second
            if self._pressure_need(usage, rate) > 0:
                self.run_pass("disk_pressure")

    def start(self) -> None:
        """Run check() every check_interval and resync() every resync_interval in one background thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping = False
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, name="storage", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background thread; it wakes at once and finishes the step it is in."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        while self._requests:
            req = self._requests.popleft()
            req.error = RuntimeError("storage stopped")
            req.done.set()

    def request(
        self, action: str | None, trigger: str = "alert", timeout: float = 30.0, *, dry_run: bool = False
    ) -> RetentionReport:
        """Ask the storage thread for a pass now and wait for its report (TimeoutError: it still runs later)."""
        if trigger not in RETENTION_TRIGGERS or (action is not None and action not in ALERT_ACTIONS):
            raise ValueError(f"unknown retention trigger {trigger!r} or action {action!r}")
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread() or self._stopping:
            return self.run_pass(trigger, action=action, dry_run=dry_run)
        req = _Request(action, trigger, dry_run)
        self._requests.append(req)
        self._wake.set()
        if not req.done.wait(timeout):
            raise TimeoutError(f"retention pass ({trigger}, {action}) did not finish within {timeout:g} s")
        if req.error is not None:
            raise req.error
        assert req.report is not None
        return req.report

    def _run(self) -> None:
        if not self._scanned:
            self._guarded(self.scan)
        next_check = self._monotonic()
        next_pressure = next_check
        next_resync = next_check + self._st.resync_interval
        while not self._stopping:
            while self._requests and not self._stopping:
                req = self._requests.popleft()
                try:
                    req.report = self.run_pass(req.trigger, action=req.action, dry_run=req.dry_run)
                except Exception as exc:  # handed to the waiting thread, which decides
                    log.exception("requested retention pass failed")
                    req.error = exc
                req.done.set()
            now = self._monotonic()
            if now >= next_resync and not self._stopping:
                self._guarded(self.resync)
                next_resync = now + self._st.resync_interval
            if now >= next_check and not self._stopping:
                self._pressure_due = False
                self._guarded(self.check)
                next_check = now + self._st.check_interval
                next_pressure = self._monotonic() + self.next_pressure_delay()
            elif (self._pressure_due or now >= next_pressure) and not self._stopping:
                self._pressure_due = False
                progressed = True
                try:
                    progressed = self.pressure_check()
                except Exception:  # the thread must outlive one bad step; the next one retries
                    log.exception("storage pressure_check failed")
                delay = self.next_pressure_delay()
                if not progressed:
                    delay = max(delay, STUCK_PRESSURE_RECHECK)
                next_pressure = self._monotonic() + delay
            timeout = max(0.0, min(next_check, next_resync, next_pressure) - self._monotonic())
            self._wake.wait(timeout)
            self._wake.clear()

    @staticmethod
    def _guarded(step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:  # the thread must outlive one bad step; the next one retries
            log.exception("storage %s failed", step.__name__)

    # -----------------------------------------------------------------------------------------------
    # Index internals

    def _rescan(self, *, initial: bool) -> None:
        with self._work_lock:
            with self._lock:
                self._pending = []
                current = {cam: list(ix.entries) for cam, ix in self._index.items()}  # pointer copies
            try:
                active = self._active_names()
                fresh = {}
                for cam in self._camera_ids:
                    # Known names keep their parsed start (a resync parses only new names) and, unchanged, their
                    # very entry, so the new index shares memory with the old. One camera's map at a time.
                    known = {e.name: e for e in current.pop(cam, ())}
                    fresh[cam] = self._scan_camera(cam, known, active)
                    del known
            except BaseException:
                with self._lock:
                    self._pending = None
                raise
            with self._lock:
                pending, self._pending = self._pending, None
                old = self._index
                self._index = {cam: _CameraIndex(entries) for cam, entries in fresh.items()}
                for op, cam, entry in pending or ():
                    if op == "add":
                        self._add_locked(cam, entry)
                    else:
                        self._remove_locked(cam, entry)
                for cam in self._camera_ids:
                    self._refresh_rate_locked(cam)
                self._scanned = True
                self._publish_locked()
                if not initial:
                    for cam in self._camera_ids:
                        before, after = len(old[cam].entries), len(self._index[cam].entries)
                        if before != after:
                            log.info("camera %s: resync found %d segments, the index had %d", cam, after, before)
        total = sum(len(ix.entries) for ix in self._index.values())
        log.debug("%s %s: %d segments", "scanned" if initial else "resynced", self._base, total)

    def _scan_camera(self, cam: str, known: Mapping[str, _Entry], active: set[tuple[str, str]]) -> list[_Entry]:
        """List one camera folder: regular files named as this camera's segments, never through a symlink."""
        if not self._folder_ok(cam):
            return []
        entries: list[_Entry] = []
        try:
            # Listed through a folder fd opened with O_NOFOLLOW: a folder swapped for a symlink after the check
            # above fails here (ELOOP) instead of being walked.
            dir_fd = self._open_camera_folder(cam)
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("camera %s: cannot list %s: %s", cam, self._base / cam, exc)
            return []
        try:
            with os.scandir(dir_fd) as it:
                for de in it:
                    name = de.name
                    if (cam, name) in active or not de.is_file(follow_symlinks=False):
                        continue  # FFmpeg still writes it: accounted when it completes
                    old = known.get(name)
                    if old is not None:
                        start, duration = old.start, old.duration
                    else:
                        parsed = parse_segment_name(name)
                        if parsed is None or parsed.camera != cam:
                            continue
                        start, duration = parsed.start, 0.0
                    try:
                        size = de.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
                    if size == 0:
                        # Left by an FFmpeg that died before its header (a start into a full disk): no
                        # recording, so never counted as one. The supervisor that made it removes its own.
                        continue
                    if old is not None and old.size == size:
                        entries.append(old)
                    else:
                        entries.append(_Entry(start, name, size, duration))
        except OSError as exc:
            log.warning("camera %s: cannot list %s: %s", cam, self._base / cam, exc)
            return []
        finally:
            os.close(dir_fd)
        entries.sort()
        return entries

    def _folder_ok(self, cam: str) -> bool:
        """True when <base>/<camera> is a real folder (not a symlink) or does not exist yet."""
        folder = self._base / cam
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            return True
        except OSError as exc:
            log.warning("camera %s: cannot examine %s: %s", cam, folder, exc)
            return False
        if stat.S_ISDIR(st.st_mode):
            self._warned_folders.discard(cam)
            return True
        if cam not in self._warned_folders:
            self._warned_folders.add(cam)
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
            log.warning("camera %s: %s is %s; it is neither accounted nor cleaned", cam, folder, what)
        return False

    def _open_camera_folder(self, cam: str) -> int:
        """Open <base>/<camera> without following a symlink at the last step, so everything stays inside it."""
        # The base may itself be a symlink: that is the operator's configuration, unlike a camera folder.
        base_fd = os.open(self._base, _DIR_FLAGS)
        try:
            return os.open(cam, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=base_fd)
        finally:
            os.close(base_fd)

    def _active_names(self) -> set[tuple[str, str]]:
        """(folder name, file name) of every file FFmpeg writes; matched loosely so more is spared, never less."""
        # No fallback when the callback fails: the exception ends the pass rather than risk an open file.
        return {(Path(p).parent.name, Path(p).name) for p in self._active_paths()}

    def _entry_for(self, camera: str, path: Path, size: int, duration: float) -> _Entry | None:
        """An index entry for a reported segment, or None when the path is not one of ours to manage."""
        if camera not in self._index:
            return None
        path = Path(path)
        parsed = parse_segment_name(path.name)
        if parsed is None or parsed.camera != camera:
            return None
        # Purely lexical, so no syscall: the supervisor builds paths from the same base directory.
        if Path(os.path.abspath(path.parent)) != self._base / camera:
            return None
        return _Entry(parsed.start, path.name, int(size), float(duration) if duration > 0 else 0.0)

    def _add_locked(self, cam: str, entry: _Entry) -> None:
        ix = self._index[cam]
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

    def _remove_locked(self, cam: str, key: _Entry) -> bool:
        ix = self._index.get(cam)
        if ix is None:
            return False
        entries = ix.entries
        i = bisect.bisect_left(entries, (key.start, key.name))
        if i < len(entries) and entries[i].name == key.name:
            ix.bytes -= entries[i].size
            del entries[i]
            return True
        return False

    def _remove_many_locked(self, cam: str, files: Iterable[DeletedFile]) -> None:
        """Drop deleted files from a camera's list; they are nearly always a prefix, so only that is rebuilt."""
        ix = self._index[cam]
        names = {f.name for f in files}
        newest = max((f.start for f in files), default=None)
        if newest is None:
            return
        entries = ix.entries
        end = bisect.bisect_right(entries, (newest, "\U0010ffff"))
        kept = []
        for e in entries[:end]:
            if e.name in names:
                ix.bytes -= e.size
            else:
                kept.append(e)
        entries[:end] = kept

    def _refresh_rate_locked(self, cam: str) -> None:
        """Bytes per second of the segments that ended within the rate window, over their total duration."""
        ix = self._index[cam]
        entries = ix.entries
        now = self._clock()
        max_gap = NEWEST_GRACE_SEGMENTS * self._segment_time
        window_start = now - max(RATE_WINDOW_SECONDS, RATE_WINDOW_SEGMENTS * self._segment_time)
        i = bisect.bisect_left(entries, (window_start - max_gap,))
        # Names from the future (a clock set back) are left out rather than walked on every change.
        end = bisect.bisect_right(entries, (now, "\U0010ffff"))
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
        ix.rate = total_bytes / total_seconds if total_seconds > 0 else 0.0

    def _publish_locked(self) -> None:
        self._snapshot = self._build_snapshot_locked()

    def _build_snapshot_locked(self) -> StorageSnapshot:
        cameras = {}
        for cam in self._camera_ids:
            ix = self._index[cam]
            entries = ix.entries
            cameras[cam] = CameraStorage(
                camera=cam,
                files=len(entries),
                bytes=ix.bytes,
                oldest_start=entries[0].start if entries else None,
                newest_start=entries[-1].start if entries else None,
                write_rate_bytes_per_second=ix.rate,
                max_age_seconds=self._max_age[cam],
            )
        rate = sum(c.write_rate_bytes_per_second for c in cameras.values())
        usage = self._usage
        capacity = None
        if usage is not None and rate > 0:
            recordings = sum(c.bytes for c in cameras.values())
            usable = self._threshold * usage.size - (usage.used - recordings)
            capacity = max(usable, 0.0) / rate
        default_days = self._st.cleanup_days if self._st.cleanup_enabled else None
        return StorageSnapshot(
            path=str(self._base),
            cameras=MappingProxyType(cameras),
            filesystem_size_bytes=usage.size if usage else None,
            filesystem_avail_bytes=usage.avail if usage else None,
            used_ratio=usage.used_ratio if usage else None,
            writable=self._writable,
            checked_at=self._checked_at,
            write_rate_bytes_per_second=rate,
            capacity_seconds=capacity,
            recording_allowed=self._recording_allowed,
            max_age_seconds=default_days * DAY if default_days is not None else None,
            disk_usage_threshold_ratio=self._threshold,
            low_space_warning_ratio=self._low_space,
            pressure_target_ratio=self._target,
            min_free_unmet=self._min_free_unmet,
            deleted_files=MappingProxyType(dict(self._deleted_files)),
            deleted_bytes=MappingProxyType(dict(self._deleted_bytes)),
            runs=MappingProxyType(dict(self._runs)),
            last_run_timestamp=self._last_run,
        )

    def segments_between(
        self, camera: str, start: float, end: float
    ) -> collections.abc.Sequence[tuple[float, str, int, float]]:
        """(start, name, size, duration) of a camera's indexed segments that may overlap [start, end), oldest
        first: those starting inside it plus the one before, which may run into it. Duration 0.0 is unknown.
        A copy of a slice of the in-memory index (no disk access); empty for an unknown camera."""
        with self._lock:
            ix = self._index.get(camera)
            if ix is None:
                return []
            entries = ix.entries
            first = max(0, bisect.bisect_left(entries, (start,)) - 1)
            return entries[first : bisect.bisect_left(entries, (end,), lo=first)]


# ---------------------------------------------------------------------------------------------------
# Helpers


def _allocated(size: int, block_size: int) -> int:
    """Bytes a file of `size` occupies, rounded up to whole blocks (what deleting it gives back)."""
    return -(-size // block_size) * block_size


def _group(files: Iterable[DeletedFile]) -> dict[str, list[DeletedFile]]:
    out: dict[str, list[DeletedFile]] = {}
    for f in files:
        out.setdefault(f.camera, []).append(f)
    return out


def _totals(files: Iterable[DeletedFile]) -> dict[tuple[str, str], tuple[int, int]]:
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for f in files:
        n, size = out.get((f.camera, f.reason), (0, 0))
        out[(f.camera, f.reason)] = (n + 1, size + f.size)
    return out


def _human_bytes(n: float) -> str:
    """Binary units, one decimal: 1.5 GiB."""
    if abs(n) < 1024:
        return f"{n:.0f} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"


def _local_time(ts: float | None) -> str:
    """Local wall-clock time, as the segment names use it; '-' for none."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts is not None else "-"


def _days(seconds: float | None) -> str:
    return f"{seconds / DAY:.1f} d" if seconds is not None else "-"


def _kept_seconds(cam: CameraStorage) -> float | None:
    """Span between a camera's oldest and newest segment start: how far back its recordings reach."""
    if cam.oldest_start is None or cam.newest_start is None:
        return None
    return cam.newest_start - cam.oldest_start


def _stats_dict(snap: StorageSnapshot, config: Config) -> dict[str, Any]:
    configured = {c.id: c for c in config.cameras}
    cameras = []
    for cam in snap.cameras.values():
        cfg = configured.get(cam.camera)
        cameras.append(
            {
                "camera": cam.camera,
                "name": cfg.name if cfg else cam.camera,
                "enabled": cfg.enabled if cfg else False,
                "files": cam.files,
                "bytes": cam.bytes,
                "oldest_start": cam.oldest_start,
                "newest_start": cam.newest_start,
                "kept_seconds": _kept_seconds(cam),
                "write_rate_bytes_per_second": cam.write_rate_bytes_per_second,
                "max_age_seconds": cam.max_age_seconds,
                "deleted_files": {r: snap.deleted_files.get((cam.camera, r), 0) for r in DELETION_REASONS},
                "deleted_bytes": {r: snap.deleted_bytes.get((cam.camera, r), 0) for r in DELETION_REASONS},
            }
        )
    capacity = snap.capacity_seconds
    return {
        "path": snap.path,
        "filesystem": {
            "size_bytes": snap.filesystem_size_bytes,
            "avail_bytes": snap.filesystem_avail_bytes,
            "used_ratio": snap.used_ratio,
            "writable": snap.writable,
            "checked_at": snap.checked_at,
        },
        "retention": {
            "disk_usage_threshold_ratio": snap.disk_usage_threshold_ratio,
            "low_space_warning_ratio": snap.low_space_warning_ratio,
            "pressure_target_ratio": snap.pressure_target_ratio,
            "on_threshold": config.storage.on_threshold.value,
            "recording_allowed": snap.recording_allowed,
            "max_age_seconds": snap.max_age_seconds,
            "capacity_seconds": capacity,
            "capacity_days": capacity / DAY if capacity is not None else None,
            "runs": dict(snap.runs),
            "last_run_timestamp": snap.last_run_timestamp,
        },
        "total": {
            "files": snap.files,
            "bytes": snap.bytes,
            "write_rate_bytes_per_second": snap.write_rate_bytes_per_second,
        },
        "cameras": cameras,
    }


def format_stats(snapshot: StorageSnapshot, config: Config, *, as_json: bool) -> str:
    """`--stats`: per camera files, size, oldest, newest, write rate, plus disk usage and retention capacity."""
    if as_json:
        return json.dumps(_stats_dict(snapshot, config), indent=2)
    snap = snapshot
    lines = []
    if snap.filesystem_size_bytes is not None and snap.used_ratio is not None:
        state = {True: "writable", False: "NOT WRITABLE", None: "not probed"}[snap.writable]
        lines.append(
            f"Recordings in {snap.path}: filesystem {_human_bytes(snap.filesystem_size_bytes)}, "
            f"{_human_bytes(snap.filesystem_avail_bytes or 0)} available, {snap.used_ratio * 100:.1f}% used, {state}"
        )
    else:
        lines.append(f"Recordings in {snap.path}: filesystem not readable")
    header = ("CAMERA", "FILES", "SIZE", "OLDEST", "NEWEST", "KEPT", "RATE", "MAX AGE")
    rows = [header]
    for cam in snap.cameras.values():
        rows.append(
            (
                cam.camera,
                str(cam.files),
                _human_bytes(cam.bytes),
                _local_time(cam.oldest_start),
                _local_time(cam.newest_start),
                _days(_kept_seconds(cam)),
                _human_bytes(cam.write_rate_bytes_per_second) + "/s",
                _days(cam.max_age_seconds) if cam.max_age_seconds is not None else "off",
            )
        )
    total_rate = _human_bytes(snap.write_rate_bytes_per_second) + "/s"
    rows.append(("TOTAL", str(snap.files), _human_bytes(snap.bytes), "", "", "", total_rate, ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    capacity = (
        f"{snap.capacity_seconds / DAY:.1f} days fit below the threshold at the current write rate"
        if snap.capacity_seconds is not None
        else "capacity unknown (no write rate yet)"
    )
    lines.append(
        f"Retention: delete above {snap.disk_usage_threshold_ratio * 100:g}% used down to "
        f"{snap.pressure_target_ratio * 100:g}% ({config.storage.on_threshold.value}), warn at "
        f"{snap.low_space_warning_ratio * 100:g}%; {capacity}"
    )
    if not snap.recording_allowed:
        lines.append("Recording is stopped: the disk is above the threshold")
    return "\n".join(lines)


def format_report(report: RetentionReport, *, dry_run: bool | None = None) -> str:
    """`--cleanup`: each file deleted (or that would be) with its reason and size, then the totals."""
    dry = report.dry_run if dry_run is None else dry_run
    verb = "would delete" if dry else "deleted"
    lines = [f"{verb} {report.path(f)} ({f.reason}, {_human_bytes(f.size)}, {f.size} bytes)" for f in report.files]
    for cam, name, error in report.failed:
        lines.append(f"could not delete {report.base_directory / cam / name}: {error}")
    for (cam, reason), (files, size) in sorted(report.totals().items()):
        lines.append(f"camera {cam}: {files} files, {size} bytes ({_human_bytes(size)}) {reason}")
    lines.append(
        f"total: {report.file_count} files, {report.total_bytes} bytes ({_human_bytes(report.total_bytes)}) "
        f"{verb}" + (f", {len(report.failed)} failed" if report.failed else "")
    )
    if report.used_ratio_before is not None:
        after = f" -> {report.used_ratio_after * 100:.1f}%" if report.used_ratio_after is not None and not dry else ""
        lines.append(f"disk usage: {report.used_ratio_before * 100:.1f}%{after}")
    return "\n".join(lines)
