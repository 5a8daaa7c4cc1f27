"""One retention pass from start to report: reclaim what is no footage, plan, delete, account and log."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from recorder.config import ThresholdAction
from recorder.domain.vocabulary import AlertAction, RetentionTrigger, values
from recorder.storage.retention.filesystem import RecordingsFolder, active_names
from recorder.storage.retention.health import FolderWatch
from recorder.storage.retention.model import DeletedFile, DiskUsage, RetentionReport, human_bytes, totals
from recorder.storage.retention.planner import IndexView, PassPlan, Policy, bytes_above, plan_pass, policies
from recorder.storage.retention.pressure import PressureGuard
from recorder.storage.retention.state import StorageState

log = logging.getLogger("recorder.storage")

# The vocabulary's words as plain tuples, for the error messages.
ALERT_ACTIONS: tuple[str, ...] = values(AlertAction)
RETENTION_TRIGGERS: tuple[str, ...] = values(RetentionTrigger)


def check_pass_words(trigger: str, action: str | None) -> None:
    """ValueError unless the trigger and alert action are words of the vocabulary that fit together."""
    if trigger not in RETENTION_TRIGGERS:
        raise ValueError(f"unknown retention trigger {trigger!r}; expected one of {RETENTION_TRIGGERS}")
    if action is not None and action not in ALERT_ACTIONS:
        raise ValueError(f"unknown retention action {action!r}; expected one of {ALERT_ACTIONS}")
    if trigger == RetentionTrigger.ALERT and action is None:
        raise ValueError("an alert-triggered pass needs an action: " + ", ".join(ALERT_ACTIONS))


class PassRunner:
    """Runs retention passes on the shared state, one at a time (under the state's work lock)."""

    def __init__(
        self,
        state: StorageState,
        folder: RecordingsFolder,
        watch: FolderWatch,
        guard: PressureGuard,
        active_paths: Callable[[], Collection[Path]],  # files FFmpeg has open now
        # Transcoding hooks (recorder/transcoding/), read at every pass: each frees space that is no footage
        # (kept originals) and returns the bytes it freed; called with the bytes a pressure pass needs, or 0
        # for expiry only.
        reclaimers: Callable[[], Sequence[Callable[[int], int]]] = tuple,
    ) -> None:
        self._state = state
        self._folder = folder
        self._watch = watch
        self._guard = guard
        self._active_paths = active_paths
        self._reclaimers = reclaimers

    def run(self, trigger: str, action: str | None, dry_run: bool) -> RetentionReport:
        """Apply the retention policies the trigger (or alert action) calls for and report every file."""
        check_pass_words(trigger, action)
        with self._state.work_lock:
            return self._run_locked(trigger, action, dry_run)

    def run_requested(self, trigger: str, action: str | None, dry_run: bool) -> RetentionReport:
        """A pass another thread asked the worker for: a failure is logged here and raised to that thread."""
        try:
            return self.run(trigger, action, dry_run)
        except Exception:  # handed to the waiting thread, which decides
            log.exception("requested retention pass failed")
            raise

    def refresh_filesystem(self) -> None:
        """Read statvfs and run the write probe; updates the snapshot and the recording_allowed flag."""
        self._guard.update_recording_allowed(self._watch.refresh())

    def check(self) -> None:
        """One periodic step: statvfs and write probe, the max_age pass, and a disk_pressure pass if needed."""
        self.refresh_filesystem()
        self.run(RetentionTrigger.SCHEDULE, None, False)
        usage = self._state.usage
        if usage is not None and self._state.settings.on_threshold is ThresholdAction.DELETE_OLDEST:
            rate = self._state.snapshot.write_rate_bytes_per_second
            if self._guard.need(usage, rate) > 0:
                self.run(RetentionTrigger.DISK_PRESSURE, None, False)

    def pressure_check(self) -> bool:
        """statvfs, and a disk_pressure pass when the disk is under pressure (see Storage.pressure_check)."""
        state = self._state
        usage = self._watch.read_usage()
        if usage is None:
            return False
        with state.lock:
            state.usage = usage
            state.checked_at = state.clock()
            rate = state.index.rate
            state.publish_locked()
        if self._guard.wanted(usage, rate):
            return self.run(RetentionTrigger.DISK_PRESSURE, None, False).file_count > 0
        self._guard.update_recording_allowed(usage)
        return True

    def _run_locked(self, trigger: str, action: str | None, dry_run: bool) -> RetentionReport:
        state, watch, guard = self._state, self._watch, self._guard
        started = state.clock()
        # One statvfs up front; the bytes to free are computed from it and decremented by what is picked, so
        # a pass over 200,000 files needs no further reads until the check at the end.
        usage = watch.read_usage()
        view = self._index_view()
        if not dry_run and self._reclaimers():
            # What frees space without deleting footage (kept originals of transcoded segments) goes first,
            # so the plan reads the usage that is left.
            usage = self._reclaim_before_footage(usage, view.rate, trigger, action)
        plan = plan_pass(view, usage, started, state.settings, trigger=trigger, action=action)
        if Policy.FREE_SPACE in policies(trigger, action) and not state.settings.alerts_delete:
            log.info(
                "retention: the alert's %s deletes nothing: storage.delete_on_alert is off (it follows "
                "on_threshold, and stop_recording keeps every file; set it to true to let alerts delete)", action,
            )  # fmt: skip
        if plan.pressure is not None and usage is not None:
            guard.note_min_free(plan.pressure.min_free_unmet, usage, view.rate)
        for policy in plan.unread_policies:
            log.warning("retention: %s skipped, the filesystem of %s cannot be read", policy, state.base)
        if dry_run:
            done, failed, usage_after = list(plan.victims), [], usage
        else:
            done, failed = self._delete(plan, view.orphans)
            usage_after = watch.read_usage()
        finished = state.clock()
        with state.lock:
            if not dry_run:
                state.counters.count_run(trigger, finished)
                if usage_after is not None:
                    state.usage = usage_after
            state.publish_locked()
        allowed = guard.update_recording_allowed(usage_after) if not dry_run else state.recording_allowed
        if not dry_run and Policy.DISK_PRESSURE in policies(trigger, action):
            guard.note_outcome(usage_after, len(done), view.rate)
        return RetentionReport(
            trigger=trigger,
            action=action,
            dry_run=dry_run,
            base_directory=state.base,
            started_at=started,
            finished_at=finished,
            files=tuple(done),
            failed=tuple(failed),
            used_ratio_before=usage.used_ratio if usage else None,
            used_ratio_after=usage_after.used_ratio if usage_after else None,
            recording_allowed=allowed,
            orphans=frozenset(view.orphans),
        )

    def _index_view(self) -> IndexView:
        state = self._state
        active = active_names(self._active_paths())
        with state.lock:
            lists = state.index.copies()
            rate = state.index.rate
            orphans = frozenset(state.index.orphans)
        folders_ok = {cam: self._folder.folder_ok(cam) for cam, entries in lists.items() if entries}
        return IndexView(lists, rate, active, folders_ok, orphans)

    def _reclaim_before_footage(
        self, usage: DiskUsage | None, rate: float, trigger: str, action: str | None
    ) -> DiskUsage | None:
        """Expire what the reclaimers keep, free what this pass would otherwise take from footage; new usage."""
        self._reclaim(0)  # expiry only: kept originals past keep_original_days
        if usage is None:
            return self._watch.read_usage()
        settings, need = self._state.settings, 0
        if Policy.FREE_SPACE in policies(trigger, action) and not settings.alerts_delete:
            return usage  # the alert frees nothing, kept originals included
        for policy in policies(trigger, action):
            if policy is Policy.FREE_SPACE:
                need = max(need, bytes_above(usage.size, usage.used, settings.alert_floor, strict=True))
            elif policy is Policy.DISK_PRESSURE and settings.on_threshold is not ThresholdAction.STOP_RECORDING:
                need = max(need, settings.pressure(usage, rate).bytes_to_free)
        if need > 0:
            self._reclaim(need)
        return self._watch.read_usage()

    def _reclaim(self, bytes_needed: int) -> int:
        """Bytes the reclaimers freed; one failing never stops retention from protecting the recorder."""
        freed = 0
        for reclaim in self._reclaimers():
            try:
                freed += reclaim(max(bytes_needed - freed, 0))
            except Exception:
                log.exception("retention: a reclaimer failed; footage retention goes on")
        return freed

    def _delete(self, plan: PassPlan, orphans: Collection[str]) -> tuple[list[DeletedFile], list[tuple[str, str, str]]]:
        """Unlink the plan's victims (without holding the lock), then drop them from the index and count them."""
        state = self._state
        # Re-read right before unlinking so a segment FFmpeg opened since the pass started is spared.
        result = self._folder.delete(plan.victims, active_names(self._active_paths()))
        with state.lock:
            touched = state.index.remove_deleted(result.done + result.gone)
            state.index.refresh_rates(state.clock(), touched)
            state.counters.count_deleted(result.done)
        for (cam, reason), (files, size) in totals(result.done).items():
            log.info(
                "camera %s%s: retention deleted %d segments (%s) for %s",
                cam,
                " (not in the configuration)" if cam in orphans else "",
                files,
                human_bytes(size),
                reason,
            )
        for cam, name, error in result.failed[:10]:
            log.warning("camera %s: retention could not delete %s: %s", cam, name, error)
        if len(result.failed) > 10:
            log.warning("retention could not delete %d more files", len(result.failed) - 10)
        return result.done, result.failed
