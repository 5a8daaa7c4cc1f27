"""The storage facade: per-camera accounting of segments, the filesystem check and the retention policies.

The work is done in recorder/storage/retention/: the shared state and its locks (state), the index built from disk
(scan), the folder's health (health), disk pressure and the stop_recording flag (pressure), retention
passes (passes, planned by the pure planner) and the one worker thread (worker). This class wires them and
keeps the methods the daemon, the CLI and the supervisors call.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from recorder.config import Config
from recorder.domain.vocabulary import RetentionTrigger
from recorder.footage.segments import CompletedSegment, parse_segment_name
from recorder.state.snapshots import StorageSnapshot
from recorder.storage.retention.accounting import RetentionCounters, SnapshotBuilder
from recorder.storage.retention.filesystem import RecordingsFolder, statvfs_usage
from recorder.storage.retention.health import FolderWatch
from recorder.storage.retention.model import DAY, DiskUsage, Entry, RetentionReport
from recorder.storage.retention.passes import ALERT_ACTIONS, RETENTION_TRIGGERS, PassRunner
from recorder.storage.retention.planner import RetentionSettings
from recorder.storage.retention.pressure import PressureGuard
from recorder.storage.retention.scan import folders_moved, rescan
from recorder.storage.retention.state import StorageState
from recorder.storage.retention.worker import PeriodicSteps, RetentionWorker

log = logging.getLogger(__name__)


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
        # Transcoding hooks (recorder/transcoding/). Reclaimers free space that is no footage (kept originals)
        # before any segment goes: called with the bytes a pressure pass needs, or 0 on the schedule pass
        # (expiry only); each returns the bytes it freed. The capacity model turns (usable bytes, write rate)
        # into seconds when footage shrinks with age; None: usable / rate.
        reclaimers: Sequence[Callable[[int], int]] = (),
        capacity_model: Callable[[float, float], float] | None = None,
    ) -> None:
        st = config.storage
        base = Path(os.path.abspath(config.recording.base_directory))
        camera_ids = tuple(c.id for c in config.cameras)
        settings = RetentionSettings.from_config(config)
        self._capacity_model = capacity_model
        default_max_age = st.cleanup_days * DAY if st.cleanup_enabled else None
        snapshots = SnapshotBuilder(base, settings, default_max_age=default_max_age, capacity_model=capacity_model)
        self._state = state = StorageState(base, camera_ids, settings, clock, snapshots)
        self._folder = RecordingsFolder(base, camera_ids)
        self._active_paths = active_paths
        self._watch = FolderWatch(state, self._folder, fs_usage)
        self._pressure = PressureGuard(state, st.check_interval, on_recording_allowed)
        self._reclaimers = tuple(reclaimers)  # read at every pass: a test swaps them on a running daemon
        self._passes = PassRunner(
            state, self._folder, self._watch, self._pressure, active_paths, reclaimers=lambda: self._reclaimers
        )
        self._steps = PeriodicSteps(self, st.check_interval, st.resync_interval, monotonic)
        self._worker = RetentionWorker(self._steps.run_due)

    # Reading

    @property
    def base_directory(self) -> Path:
        return self._state.base

    @property
    def alive(self) -> bool:
        """True while the background worker started by start() runs (the daemon's watchdog reads it)."""
        return self._worker.alive

    @property
    def scanned(self) -> bool:
        """True once the index was built from disk; the worker scans first when nobody did."""
        return self._state.scanned

    def snapshot(self) -> StorageSnapshot:
        """The latest published snapshot; no lock, no disk access."""
        return self._state.snapshot

    def recording_allowed(self) -> bool:
        """False while on_threshold is stop_recording and the disk is above the threshold."""
        return self._state.recording_allowed

    def capacity_seconds(self) -> float | None:
        """Seconds of recording that fit in the space the recorder may use, at the current total write rate.

        The space the recorder may use is `threshold_ratio * size - (used - recordings)`: everything below
        the deletion threshold except what other data occupies; equivalently recordings + avail minus the
        reserve above the threshold. Divided by the total write rate; None when the rate is zero or unknown
        or the filesystem was not read yet.
        """
        return self._state.snapshot.capacity_seconds

    def segments_between(self, camera: str, start: float, end: float) -> Sequence[tuple[float, str, int, float]]:
        """(start, name, size, duration) of a camera's indexed segments that may overlap [start, end), oldest
        first: those starting inside it plus the one before, which may run into it. Duration 0.0 is unknown.
        A copy of a slice of the in-memory index (no disk access); empty for an unknown camera."""
        with self._state.lock:
            return self._state.index.between(camera, start, end)

    # Accounting

    def scan(self) -> None:
        """Index every camera folder from disk (done once at start; `resync` repeats it)."""
        rescan(self._state, self._folder, self._active_paths, initial=True)

    def resync(self) -> None:
        """Re-list every camera folder and replace the index, catching files changed or deleted by others."""
        rescan(self._state, self._folder, self._active_paths, initial=False)

    def add_segment(self, seg: CompletedSegment) -> bool:
        """Account a segment FFmpeg completed; False (and ignored) when it is not a segment we may manage."""
        state = self._state
        entry = state.index.entry_for(seg.camera, seg.path, seg.size, seg.duration)
        if entry is None:
            log.warning("camera %s: not accounting %s: not a segment in its recordings folder", seg.camera, seg.path)
            return False
        # statvfs costs microseconds: the free-space gauges are never older than one segment, and a disk
        # that fills faster than check_interval is noticed at the segment that brought it under pressure.
        usage = self._watch.read_usage()
        with state.lock:
            state.index.add(seg.camera, entry)
            state.index.refresh_rates(state.clock(), (seg.camera,))
            if usage is not None:
                state.usage = usage
            rate = state.index.rate
            state.publish_locked()
        if usage is not None and self._pressure.wanted(usage, rate):
            self._steps.pressure_due = True
            self._worker.wake()
        return True

    def forget(self, path: Path) -> bool:
        """Drop a file a supervisor removed itself from the accounting; False when it was not indexed."""
        state = self._state
        path = Path(path)
        camera = path.parent.name
        parsed = parse_segment_name(path.name)
        if parsed is None or camera not in state.index.cameras:
            return False
        with state.lock:
            removed = state.index.forget(camera, Entry(parsed.start, path.name, 0, 0.0))
            if removed:
                state.index.refresh_rates(state.clock(), (camera,))
                state.publish_locked()
        return removed

    # Disk pressure and the filesystem

    def pressure_check(self) -> bool:
        """statvfs, and a disk_pressure pass when the disk is under pressure (the fast path of check()).

        False when the disk is under pressure and the pass could delete nothing (what is left is protected,
        or other programs' data): the next look need not come as fast as the fill rate would ask.
        """
        return self._passes.pressure_check()

    def free_space_now(self, timeout: float = 10.0) -> RetentionReport | None:
        """A disk_pressure pass right away, for a writer that met ENOSPC; None when it could not run."""
        try:
            return self.request(None, RetentionTrigger.DISK_PRESSURE, timeout=timeout)
        except (TimeoutError, RuntimeError, OSError) as exc:
            log.warning("retention: the pass for a full disk did not run: %s", exc)
            return None

    def next_pressure_delay(self) -> float:
        """Seconds until the next pressure check: check_interval, or sooner while the disk fills fast."""
        return self._pressure.next_delay()

    def refresh_filesystem(self) -> None:
        """Read statvfs and run the write probe; updates the snapshot and the recording_allowed flag."""
        self._passes.refresh_filesystem()

    def note_write_result(self, camera: str, error: str | None) -> None:
        """A supervisor's own write probe in its camera folder: `storage_writable` follows it at once.

        A failure sets it to 0 now rather than at the next check. A success clears that camera's failure;
        when no camera reports one any more, the whole folder is probed again right here (a few small
        writes), so `storage_writable` returns to 1 within the second the supervisor noticed.
        """
        self._watch.note_write_result(camera, error)

    # Retention

    def run_pass(self, trigger: str, *, action: str | None = None, dry_run: bool = False) -> RetentionReport:
        """Apply the retention policies the trigger (or alert action) calls for and report every file."""
        return self._passes.run(trigger, action, dry_run)

    # Periodic work

    def check(self) -> None:
        """One periodic step: statvfs and write probe, the max_age pass, and a disk_pressure pass if needed;
        first a resync when a camera folder is no longer the one indexed (a mount point came or went)."""
        if self._state.scanned:
            moved = folders_moved(self._state)
            if moved:
                log.warning(
                    "camera folder of %s changed (a mount point unmounted or mounted?): indexing it again",
                    ", ".join(moved),
                )
                self.resync()
        self._passes.check()

    def start(self) -> None:
        """Run check() every check_interval and resync() every resync_interval in one background worker."""
        if self._worker.alive:
            return
        self._steps.restart()
        self._worker.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background worker; it finishes the step it is in, passes asked for and not begun fail."""
        self._worker.stop(timeout)

    def carry_counters_from(self, earlier: Storage, since: RetentionCounters | None = None) -> RetentionCounters:
        """Go on from the deletion and pass counts of the accounting this one replaces (a reload): all of them,
        or those counted after `since`; returns a copy of `earlier`'s counts now, for the next call's `since`."""
        state = self._state
        with earlier._state.lock, state.lock:
            state.counters.carry_from(earlier._state.counters, since)
            state.publish_locked()
            return earlier._state.counters.copy()

    def request(
        self, action: str | None, trigger: str = "alert", timeout: float = 30.0, *, dry_run: bool = False
    ) -> RetentionReport:
        """Ask the storage worker for a pass now and wait for its report (TimeoutError: it still runs later)."""
        if trigger not in RETENTION_TRIGGERS or (action is not None and action not in ALERT_ACTIONS):
            raise ValueError(f"unknown retention trigger {trigger!r} or action {action!r}")
        if self._worker.runs_inline():
            return self.run_pass(trigger, action=action, dry_run=dry_run)
        future = self._worker.submit(lambda: self._passes.run_requested(trigger, action, dry_run))
        try:
            return self._worker.result(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"retention pass ({trigger}, {action}) did not finish within {timeout:g} s") from None
