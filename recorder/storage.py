"""The storage facade: per-camera accounting of segments, the filesystem check and the retention policies.

The work is done in recorder/retention/ (index, planner, filesystem, worker); this class wires them and
keeps the counters and the published snapshot. Threading: `_lock` guards the index, the counters and the
filesystem state and is only ever held for short, syscall-free work, so the supervisors' `add_segment`
never waits long. `_work_lock` serialises the slow work (scans, retention passes); it is never taken by
`add_segment`. Deletions happen outside `_lock`: victims are planned from a copy of the index, unlinked,
and only then removed from the index.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from recorder.cli_report import format_report, format_stats
from recorder.config import Config, ThresholdAction
from recorder.retention.accounting import FilesystemState, RetentionCounters, build_snapshot
from recorder.retention.filesystem import RecordingsFolder, statvfs_usage
from recorder.retention.index import SegmentIndex
from recorder.retention.model import DAY, DeletedFile, DiskUsage, Entry, RetentionReport, human_bytes, totals
from recorder.retention.planner import (
    IndexView,
    PassPlan,
    Policy,
    RetentionSettings,
    bytes_above,
    next_check_delay,
    plan_pass,
    policies,
)
from recorder.retention.worker import PeriodicSteps, RetentionWorker
from recorder.segments import CompletedSegment, parse_segment_name
from recorder.snapshots import StorageSnapshot
from recorder.vocabulary import AlertAction, DeletionReason, RetentionTrigger, values
from recorder.write_probe import PROBE_NAME

log = logging.getLogger(__name__)

# The vocabulary's words as plain tuples, for the counters' keys and the error messages.
ALERT_ACTIONS: tuple[str, ...] = values(AlertAction)
DELETION_REASONS: tuple[str, ...] = values(DeletionReason)
RETENTION_TRIGGERS: tuple[str, ...] = values(RetentionTrigger)
__all__ = ["PROBE_NAME", "DiskUsage", "RetentionReport", "Storage", "format_report", "format_stats"]


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
        self._st = config.storage
        self._base = Path(os.path.abspath(config.recording.base_directory))
        self._clock = clock
        self._active_paths = active_paths
        self._fs_usage = fs_usage
        self._on_recording_allowed = on_recording_allowed
        self._reclaimers = tuple(reclaimers)
        self._capacity_model = capacity_model
        self._camera_ids = tuple(c.id for c in config.cameras)
        self._settings = RetentionSettings.from_config(config)
        self._folder = RecordingsFolder(self._base, self._camera_ids)

        self._lock = threading.Lock()  # index, counters, filesystem state; short and syscall-free
        self._work_lock = threading.Lock()  # one scan or pass at a time
        self._index = SegmentIndex(self._base, self._camera_ids, self._settings.segment_time)
        self._usage: DiskUsage | None = None  # last statvfs reading; None before the first or after a failure
        self._writable: bool | None = None  # last probe; None before the first
        self._checked_at: float | None = None
        self._recording_allowed = True
        # The daemon hears of the flag on its flips, and once after the first reading: a Storage built by a
        # reload starts True while the cameras may still be paused by the one it replaces.
        self._recording_allowed_told = False
        self._counters = RetentionCounters(self._camera_ids)
        self._usage_failed = False  # the last statvfs failed (already logged)
        self._min_free_unmet = False  # min_free_minutes asks for more than retention may free (logged once)
        # Write failures the supervisors met in their camera folders since the last probe: camera -> error.
        self._camera_write_errors: dict[str, str] = {}
        self._pressure_stuck = False  # pressure passes cannot get under the threshold (logged once)
        self.scanned = False  # set by the first scan; the worker scans first when nobody did
        self._steps = PeriodicSteps(self, self._st.check_interval, self._st.resync_interval, monotonic)
        self._worker = RetentionWorker(self._steps.run_due)
        self._snapshot = self._build_snapshot_locked()

    # Reading

    @property
    def base_directory(self) -> Path:
        return self._base

    @property
    def alive(self) -> bool:
        """True while the background worker started by start() runs (the daemon's watchdog reads it)."""
        return self._worker.alive

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

    def segments_between(self, camera: str, start: float, end: float) -> Sequence[tuple[float, str, int, float]]:
        """(start, name, size, duration) of a camera's indexed segments that may overlap [start, end), oldest
        first: those starting inside it plus the one before, which may run into it. Duration 0.0 is unknown.
        A copy of a slice of the in-memory index (no disk access); empty for an unknown camera."""
        with self._lock:
            return self._index.between(camera, start, end)

    # Accounting

    def scan(self) -> None:
        """Index every camera folder from disk (done once at start; `resync` repeats it)."""
        self._rescan(initial=True)

    def resync(self) -> None:
        """Re-list every camera folder and replace the index, catching files changed or deleted by others."""
        self._rescan(initial=False)

    def add_segment(self, seg: CompletedSegment) -> bool:
        """Account a segment FFmpeg completed; False (and ignored) when it is not a segment we may manage."""
        entry = self._index.entry_for(seg.camera, seg.path, seg.size, seg.duration)
        if entry is None:
            log.warning("camera %s: not accounting %s: not a segment in its recordings folder", seg.camera, seg.path)
            return False
        # statvfs costs microseconds: the free-space gauges are never older than one segment, and a disk
        # that fills faster than check_interval is noticed at the segment that brought it under pressure.
        usage = self._read_usage()
        with self._lock:
            self._index.add(seg.camera, entry)
            self._index.refresh_rates(self._clock(), (seg.camera,))
            if usage is not None:
                self._usage = usage
            rate = self._index.rate
            self._publish_locked()
        if usage is not None and self._pressure_wanted(usage, rate):
            self._steps.pressure_due = True
            self._worker.wake()
        return True

    def forget(self, path: Path) -> bool:
        """Drop a file a supervisor removed itself from the accounting; False when it was not indexed."""
        path = Path(path)
        camera = path.parent.name
        parsed = parse_segment_name(path.name)
        if parsed is None or camera not in self._index.cameras:
            return False
        with self._lock:
            removed = self._index.forget(camera, Entry(parsed.start, path.name, 0, 0.0))
            if removed:
                self._index.refresh_rates(self._clock(), (camera,))
                self._publish_locked()
        return removed

    # Disk pressure

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
            rate = self._index.rate
            self._publish_locked()
        if self._pressure_wanted(usage, rate):
            return self.run_pass(RetentionTrigger.DISK_PRESSURE).file_count > 0
        self._update_recording_allowed(usage)
        return True

    def free_space_now(self, timeout: float = 10.0) -> RetentionReport | None:
        """A disk_pressure pass right away, for a writer that met ENOSPC; None when it could not run."""
        try:
            return self.request(None, RetentionTrigger.DISK_PRESSURE, timeout=timeout)
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
            threshold=self._settings.threshold,
            check_interval=self._st.check_interval,
        )

    def _pressure_need(self, usage: DiskUsage, rate: float) -> int:
        """Bytes the disk_pressure policy must free now (see the planner); notes an unmet min_free wish."""
        need = self._settings.pressure(usage, rate)
        self._note_min_free(need.min_free_unmet, usage, rate)
        return need.bytes_to_free

    def _note_min_free(self, unmet: bool, usage: DiskUsage, rate: float) -> None:
        # Without a write rate (nothing completed within the rate window) the wish is unknown: keep the last word.
        if rate <= 0 or unmet == self._min_free_unmet:
            return
        with self._lock:
            self._min_free_unmet = unmet
            self._publish_locked()
        if unmet:
            # Once per change, not per check: it holds until the write rate drops or the disk grows.
            log.warning(
                "retention: min_free_minutes=%g at %s/s needs more free space than deleting down to "
                "pressure_target (%.0f%% used) gives on %s; footage is kept, retention goes no deeper",
                self._st.min_free_minutes,
                human_bytes(rate),
                self._settings.target * 100,
                human_bytes(usage.size),
            )
        else:
            log.info("retention: min_free_minutes fits on %s again", self._base)

    # Filesystem

    def refresh_filesystem(self) -> None:
        """Read statvfs and run the write probe; updates the snapshot and the recording_allowed flag."""
        usage = self._read_usage()
        writable = self._folder.probe(self._writable)
        with self._lock:
            previous = self._writable
            self._usage = usage
            self._writable = writable
            if writable:
                self._camera_write_errors.clear()  # every folder took a write just now
            self._checked_at = self._clock()
            self._index.refresh_rates(self._checked_at)  # rates age with the clock, not only with changes
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
                writable = self._folder.probe(self._writable)
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

    # Retention

    def run_pass(self, trigger: str, *, action: str | None = None, dry_run: bool = False) -> RetentionReport:
        """Apply the retention policies the trigger (or alert action) calls for and report every file."""
        if trigger not in RETENTION_TRIGGERS:
            raise ValueError(f"unknown retention trigger {trigger!r}; expected one of {RETENTION_TRIGGERS}")
        if action is not None and action not in ALERT_ACTIONS:
            raise ValueError(f"unknown retention action {action!r}; expected one of {ALERT_ACTIONS}")
        if trigger == RetentionTrigger.ALERT and action is None:
            raise ValueError("an alert-triggered pass needs an action: " + ", ".join(ALERT_ACTIONS))
        with self._work_lock:
            return self._run_pass_locked(trigger, action, dry_run)

    def _run_pass_locked(self, trigger: str, action: str | None, dry_run: bool) -> RetentionReport:
        started = self._clock()
        # One statvfs up front; the bytes to free are computed from it and decremented by what is picked, so
        # a pass over 200,000 files needs no further reads until the check at the end.
        usage = self._read_usage()
        view = self._index_view()
        if not dry_run and self._reclaimers:
            # What frees space without deleting footage (kept originals of transcoded segments) goes first,
            # so the plan reads the usage that is left.
            usage = self._reclaim_before_footage(usage, view.rate, trigger, action)
        plan = plan_pass(view, usage, started, self._settings, trigger=trigger, action=action)
        if plan.pressure is not None and usage is not None:
            self._note_min_free(plan.pressure.min_free_unmet, usage, view.rate)
        for policy in plan.unread_policies:
            log.warning("retention: %s skipped, the filesystem of %s cannot be read", policy, self._base)
        if dry_run:
            done, failed, usage_after = list(plan.victims), [], usage
        else:
            done, failed = self._delete(plan)
            usage_after = self._read_usage()
        finished = self._clock()
        with self._lock:
            if not dry_run:
                self._counters.count_run(trigger, finished)
                if usage_after is not None:
                    self._usage = usage_after
            self._publish_locked()
        allowed = self._update_recording_allowed(usage_after) if not dry_run else self._recording_allowed
        if not dry_run and Policy.DISK_PRESSURE in policies(trigger, action):
            self._note_pressure_outcome(usage_after, len(done), view.rate)
        return RetentionReport(
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

    def _index_view(self) -> IndexView:
        active = self._active_names()
        with self._lock:
            lists = self._index.copies()
            rate = self._index.rate
        folders_ok = {cam: self._folder.folder_ok(cam) for cam, entries in lists.items() if entries}
        return IndexView(lists, rate, active, folders_ok)

    def _note_pressure_outcome(self, usage_after: DiskUsage | None, deleted: int, rate: float) -> None:
        """Say once per episode when pressure passes cannot get the disk under the threshold."""
        if (
            usage_after is not None
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
                    deleted,
                )
        else:
            self._pressure_stuck = False

    def _reclaim_before_footage(
        self, usage: DiskUsage | None, rate: float, trigger: str, action: str | None
    ) -> DiskUsage | None:
        """Expire what the reclaimers keep, free what this pass would otherwise take from footage; new usage."""
        self._reclaim(0)  # expiry only: kept originals past keep_original_days
        if usage is None:
            return self._read_usage()
        settings, need = self._settings, 0
        for policy in policies(trigger, action):
            if policy is Policy.FREE_SPACE:
                need = max(need, bytes_above(usage.size, usage.used, settings.low_space, strict=True))
            elif policy is Policy.DISK_PRESSURE and settings.on_threshold is not ThresholdAction.STOP_RECORDING:
                need = max(need, settings.pressure(usage, rate).bytes_to_free)
        if need > 0:
            self._reclaim(need)
        return self._read_usage()

    def _reclaim(self, bytes_needed: int) -> int:
        """Bytes the reclaimers freed; one failing never stops retention from protecting the recorder."""
        freed = 0
        for reclaim in self._reclaimers:
            try:
                freed += reclaim(max(bytes_needed - freed, 0))
            except Exception:
                log.exception("retention: a reclaimer failed; footage retention goes on")
        return freed

    def _delete(self, plan: PassPlan) -> tuple[list[DeletedFile], list[tuple[str, str, str]]]:
        """Unlink the plan's victims (without holding `_lock`), then drop them from the index and count them."""
        # Re-read right before unlinking so a segment FFmpeg opened since the pass started is spared.
        result = self._folder.delete(plan.victims, self._active_names())
        with self._lock:
            touched = self._index.remove_deleted(result.done + result.gone)
            self._index.refresh_rates(self._clock(), touched)
            self._counters.count_deleted(result.done)
        for (cam, reason), (files, size) in totals(result.done).items():
            log.info("camera %s: retention deleted %d segments (%s) for %s", cam, files, human_bytes(size), reason)
        for cam, name, error in result.failed[:10]:
            log.warning("camera %s: retention could not delete %s: %s", cam, name, error)
        if len(result.failed) > 10:
            log.warning("retention could not delete %d more files", len(result.failed) - 10)
        return result.done, result.failed

    def _update_recording_allowed(self, usage: DiskUsage | None) -> bool:
        """Recompute the stop_recording flag from a reading and tell the daemon when it flips."""
        if self._st.on_threshold is not ThresholdAction.STOP_RECORDING:
            allowed = True
        elif usage is None:
            allowed = self._recording_allowed  # unknown: keep what we had
        else:
            allowed = not usage.used_ratio > self._settings.threshold
        with self._lock:
            changed = allowed != self._recording_allowed
            self._recording_allowed = allowed
            # An unknown reading (statvfs failed) decides nothing, so it is not told as the first word.
            first = not self._recording_allowed_told and (usage is not None or changed)
            self._recording_allowed_told = self._recording_allowed_told or first or changed
            if changed:
                self._publish_locked()
        if first and not changed and self._on_recording_allowed is not None:
            self._on_recording_allowed(allowed)
        if changed:
            if allowed:
                log.info("disk usage is back under the threshold: recording allowed again")
            else:
                log.warning(
                    "disk %s is %.1f%% used, above the %.0f%% threshold: recording stops (on_threshold=%s)",
                    self._base,
                    usage.used_ratio * 100 if usage else float("nan"),
                    self._settings.threshold * 100,
                    self._st.on_threshold.value,
                )
            if self._on_recording_allowed is not None:
                self._on_recording_allowed(allowed)
        return allowed

    # Periodic work

    def check(self) -> None:
        """One periodic step: statvfs and write probe, the max_age pass, and a disk_pressure pass if needed."""
        self.refresh_filesystem()
        self.run_pass(RetentionTrigger.SCHEDULE)
        usage = self._usage
        if usage is not None and self._st.on_threshold is ThresholdAction.DELETE_OLDEST:
            rate = self._snapshot.write_rate_bytes_per_second
            if self._pressure_need(usage, rate) > 0:
                self.run_pass(RetentionTrigger.DISK_PRESSURE)

    def start(self) -> None:
        """Run check() every check_interval and resync() every resync_interval in one background worker."""
        if self._worker.alive:
            return
        self._steps.restart()
        self._worker.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the background worker; it finishes the step it is in, passes asked for and not begun fail."""
        self._worker.stop(timeout)

    def request(
        self, action: str | None, trigger: str = "alert", timeout: float = 30.0, *, dry_run: bool = False
    ) -> RetentionReport:
        """Ask the storage worker for a pass now and wait for its report (TimeoutError: it still runs later)."""
        if trigger not in RETENTION_TRIGGERS or (action is not None and action not in ALERT_ACTIONS):
            raise ValueError(f"unknown retention trigger {trigger!r} or action {action!r}")
        if self._worker.runs_inline():
            return self.run_pass(trigger, action=action, dry_run=dry_run)
        future = self._worker.submit(lambda: self._requested_pass(trigger, action, dry_run))
        try:
            return self._worker.result(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"retention pass ({trigger}, {action}) did not finish within {timeout:g} s") from None

    def _requested_pass(self, trigger: str, action: str | None, dry_run: bool) -> RetentionReport:
        try:
            return self.run_pass(trigger, action=action, dry_run=dry_run)
        except Exception:  # handed to the waiting thread, which decides
            log.exception("requested retention pass failed")
            raise

    # Index internals

    def _rescan(self, *, initial: bool) -> None:
        with self._work_lock:
            with self._lock:
                current = self._index.begin_resync()  # pointer copies
            try:
                active = self._active_names()
                fresh = {}
                for cam in self._camera_ids:
                    # Known names keep their parsed start (a resync parses only new names) and, unchanged, their
                    # very entry, so the new index shares memory with the old. One camera's map at a time.
                    known = {e.name: e for e in current.pop(cam, ())}
                    fresh[cam] = self._folder.list_camera(cam, known, active)
                    del known
            except BaseException:
                with self._lock:
                    self._index.abandon_resync()
                raise
            with self._lock:
                before = self._index.finish_resync(fresh)
                self._index.refresh_rates(self._clock())
                self.scanned = True
                self._publish_locked()
                if not initial:
                    for cam in self._camera_ids:
                        after = len(self._index.cameras[cam].entries)
                        if before[cam] != after:
                            log.info("camera %s: resync found %d segments, the index had %d", cam, after, before[cam])
        total = sum(len(ix.entries) for ix in self._index.cameras.values())
        log.debug("%s %s: %d segments", "scanned" if initial else "resynced", self._base, total)

    def _active_names(self) -> set[tuple[str, str]]:
        """(folder name, file name) of every file FFmpeg writes; matched loosely so more is spared, never less."""
        # No fallback when the callback fails: the exception ends the pass rather than risk an open file.
        return {(Path(p).parent.name, Path(p).name) for p in self._active_paths()}

    def _publish_locked(self) -> None:
        self._snapshot = self._build_snapshot_locked()

    def _build_snapshot_locked(self) -> StorageSnapshot:
        return build_snapshot(
            self._base,
            self._index,
            self._settings,
            FilesystemState(self._usage, self._writable, self._checked_at),
            self._counters,
            capacity_model=self._capacity_model,
            recording_allowed=self._recording_allowed,
            min_free_unmet=self._min_free_unmet,
            default_max_age=self._st.cleanup_days * DAY if self._st.cleanup_enabled else None,
        )
