"""Disk pressure as the storage acts on it: whether a pass is due, when to look again, the stop_recording
flag and the daemon told of its flips, and the warnings said once per episode rather than once per check."""

from __future__ import annotations

import logging
from collections.abc import Callable

from recorder.config import ThresholdAction
from recorder.storage.retention.model import DiskUsage, human_bytes
from recorder.storage.retention.planner import next_check_delay
from recorder.storage.retention.state import StorageState

log = logging.getLogger("recorder.storage")


class PressureGuard:
    """Reads usage against the thresholds and keeps the shared state's flags (stop_recording, min_free)."""

    def __init__(
        self,
        state: StorageState,
        check_interval: float,
        # Told when the stop_recording flag flips; called from the storage thread, possibly inside a pass, so
        # it must not start a pass itself.
        on_recording_allowed: Callable[[bool], None] | None = None,
    ) -> None:
        self._state = state
        self._settings = state.settings
        self._check_interval = check_interval
        self._on_recording_allowed = on_recording_allowed
        # The daemon hears of the flag on its flips, and once after the first reading: a Storage built by a
        # reload starts True while the cameras may still be paused by the one it replaces.
        self._recording_allowed_told = False
        self._pressure_stuck = False  # pressure passes cannot get under the threshold (logged once)

    def wanted(self, usage: DiskUsage, rate: float) -> bool:
        """True when on_threshold deletes and the disk_pressure policy has bytes to free now."""
        return self._settings.on_threshold is ThresholdAction.DELETE_OLDEST and self.need(usage, rate) > 0

    def need(self, usage: DiskUsage, rate: float) -> int:
        """Bytes the disk_pressure policy must free now (see the planner); notes an unmet min_free wish."""
        need = self._settings.pressure(usage, rate)
        self.note_min_free(need.min_free_unmet, usage, rate)
        return need.bytes_to_free

    def next_delay(self) -> float:
        """Seconds until the next pressure check: check_interval, or sooner while the disk fills fast."""
        usage = self._state.usage
        if usage is None:
            return self._check_interval
        return next_check_delay(
            size=usage.size,
            avail=usage.avail,
            rate=self._state.snapshot.write_rate_bytes_per_second,
            threshold=self._settings.threshold,
            check_interval=self._check_interval,
        )

    def note_min_free(self, unmet: bool, usage: DiskUsage, rate: float) -> None:
        """Publish and log a change of whether min_free_minutes asks for more than retention may free."""
        state = self._state
        # Without a write rate (nothing completed within the rate window) the wish is unknown: keep the last word.
        if rate <= 0 or unmet == state.min_free_unmet:
            return
        with state.lock:
            state.min_free_unmet = unmet
            state.publish_locked()
        if unmet:
            # Once per change, not per check: it holds until the write rate drops or the disk grows.
            log.warning(
                "retention: min_free_minutes=%g at %s/s needs more free space than deleting down to "
                "pressure_target (%.0f%% used) gives on %s; footage is kept, retention goes no deeper",
                self._settings.min_free_minutes,
                human_bytes(rate),
                self._settings.target * 100,
                human_bytes(usage.size),
            )
        else:
            log.info("retention: min_free_minutes fits on %s again", state.base)

    def note_outcome(self, usage_after: DiskUsage | None, deleted: int, rate: float) -> None:
        """Say once per episode when pressure passes cannot get the disk under the threshold."""
        if (
            usage_after is not None
            and self._settings.on_threshold is ThresholdAction.DELETE_OLDEST
            and self.need(usage_after, rate) > 0
        ):
            # Protected, failed or still-open files, other programs' data, or a filesystem that frees space
            # lazily; the next check looks again rather than this pass deleting more on a reading that may lag.
            # Said once per episode: a disk filled by others is checked every second.
            if not self._pressure_stuck:
                self._pressure_stuck = True
                log.warning(
                    "retention: %s is still %.1f%% used after deleting %d files; the next checks try again",
                    self._state.base,
                    usage_after.used_ratio * 100,
                    deleted,
                )
        else:
            self._pressure_stuck = False

    def update_recording_allowed(self, usage: DiskUsage | None) -> bool:
        """Recompute the stop_recording flag from a reading and tell the daemon when it flips."""
        state, settings = self._state, self._settings
        if settings.on_threshold is not ThresholdAction.STOP_RECORDING:
            allowed = True
        elif usage is None:
            allowed = state.recording_allowed  # unknown: keep what we had
        else:
            allowed = not usage.used_ratio > settings.threshold
        with state.lock:
            changed = allowed != state.recording_allowed
            state.recording_allowed = allowed
            # An unknown reading (statvfs failed) decides nothing, so it is not told as the first word.
            first = not self._recording_allowed_told and (usage is not None or changed)
            self._recording_allowed_told = self._recording_allowed_told or first or changed
            if changed:
                state.publish_locked()
        if first and not changed and self._on_recording_allowed is not None:
            self._on_recording_allowed(allowed)
        if changed:
            if allowed:
                log.info("disk usage is back under the threshold: recording allowed again")
            else:
                log.warning(
                    "disk %s is %.1f%% used, above the %.0f%% threshold: recording stops (on_threshold=%s)",
                    state.base,
                    usage.used_ratio * 100 if usage else float("nan"),
                    settings.threshold * 100,
                    settings.on_threshold.value,
                )
            if self._on_recording_allowed is not None:
                self._on_recording_allowed(allowed)
        return allowed
