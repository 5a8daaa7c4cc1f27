"""One camera's FFmpeg runs, one at a time: started, heard while they go on, and summed up as a RunEnd.

The supervisor decides when a run starts and what follows its end; this module starts it (a failed start is
an end too), passes on what the run tells (frames, a stall, segments, its cost) and, once FFmpeg is reaped,
deals with storage causes before saying how the next wait is to be chosen. `SegmentEvents` is what becomes
of the segments a run reports (storage accounting, the index, the snapshot).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recorder.camera.report import CameraReport
from recorder.camera.storage_gate import StorageGate
from recorder.config import SupervisorConfig
from recorder.domain.vocabulary import CameraState, RestartReason
from recorder.ffmpeg.presets import FFmpegCommand
from recorder.ffmpeg.process import Launcher
from recorder.ffmpeg.run import FFmpegRun, RunHooks, abandon
from recorder.footage.segments import CompletedSegment, parse_segment_name
from recorder.footage.write_probe import is_resource_error


@dataclass(frozen=True)
class RunEnd:
    """An FFmpeg run (or its start) ended by itself: the restart reason, and how the next wait is chosen."""

    reason: str
    stable: bool = False  # it wrote frames for stable_after: the backoff starts over
    escalate: bool = True  # False: the cause was dealt with (space freed, the folder is probed before a start)


@dataclass(frozen=True)
class RunWiring:
    """What the runs need of their camera's supervisor."""

    change_state: Callable[..., None]  # the supervisor's one way to move (logs and publishes)
    publish: Callable[[], None]
    end_requested: Callable[[], str | None]  # STOP, PAUSE or hotplug when the supervisor wants the run over
    tick: Callable[[float], None]  # the supervisor thread's heartbeat
    wake_fd: int  # readable when the supervisor has news for the run


class SegmentEvents:
    """A kept segment goes to storage accounting and the snapshot; a removed one leaves the index."""

    def __init__(
        self,
        camera_id: str,
        report: CameraReport,
        publish: Callable[..., None],
        *,
        on_segment: Callable[[CompletedSegment], None],
        on_discard: Callable[[Path], None],
        log: logging.LoggerAdapter[logging.Logger],
        clock: Callable[[], float],
    ) -> None:
        self._camera_id = camera_id
        self._report = report
        self._publish = publish  # the supervisor's publish: the snapshot with these changes
        self._on_segment = on_segment
        self._on_discard = on_discard
        self._log = log
        self._clock = clock

    def done(self, path: Path, duration: float) -> None:
        """FFmpeg listed a segment as complete (or a cut one was kept): count it and hand it to storage."""
        try:
            size = path.stat().st_size
        except OSError as exc:
            self._log.warning("completed segment %s is gone: %s", path, exc)
            return
        parsed = parse_segment_name(path.name)
        start = parsed.start if parsed else self._clock() - duration
        self._publish(**self._report.segment_completed(size, duration))
        self._log.info("segment %s completed: %.1f s, %d bytes", path.name, duration, size)
        try:
            self._on_segment(CompletedSegment(self._camera_id, path, start, duration, size))
        except Exception:
            self._log.exception("storage accounting failed for %s", path)

    def discarded(self, path: Path, reason: str) -> None:
        """A segment without a decodable frame was removed: counted, and forgotten by the index."""
        self._report.discarded(reason)
        self._on_discard(path)
        self._log.warning("removed %s segment %s (no decodable frame)", reason, path.name)
        self._publish()


class CameraRuns:
    """Runs one camera's FFmpeg, one run at a time; only the supervisor thread calls it."""

    def __init__(
        self,
        camera_id: str,
        settings: SupervisorConfig,
        wiring: RunWiring,
        *,
        report: CameraReport,
        segments: SegmentEvents,
        storage: StorageGate,
        launcher: Launcher,
        ffprobe: str,
        log: logging.LoggerAdapter[logging.Logger],
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self._camera_id = camera_id
        self._settings = settings
        self._wiring = wiring
        self._report = report
        self._storage = storage
        self._launcher = launcher
        self._ffprobe = ffprobe
        self._log = log
        self._clock = clock
        self._monotonic = monotonic
        self.current: FFmpegRun | None = None  # the run under way, read by other threads (active segments)
        self._last_internal_error: str | None = None  # the last one logged with its traceback
        self._hooks = RunHooks(
            end_requested=wiring.end_requested,
            tick=wiring.tick,
            progressed=self._progressed,
            stalled=self._stalled,
            segment_done=segments.done,
            segment_discarded=segments.discarded,
            resources=report.resources_sampled,
            reaped=self._reaped,
        )

    def run(self, command: FFmpegCommand, *, stopping: Callable[[], bool]) -> RunEnd | None:
        """Start FFmpeg and see its run end; None when the supervisor ended it (stop, pause)."""
        try:
            run = FFmpegRun(
                self._launcher, command, self._settings, camera_id=self._camera_id, ffprobe=self._ffprobe,
                wake_fd=self._wiring.wake_fd, hooks=self._hooks, log=self._log,
                monotonic=self._monotonic, clock=self._clock,
            )  # fmt: skip
        except OSError as exc:
            # Out of descriptors or processes passes by itself; a missing or unrunnable binary does not.
            reason = RestartReason.RESOURCE_EXHAUSTED if is_resource_error(exc) else RestartReason.CONFIG
            self._report.last_error = f"cannot start FFmpeg: {exc}"
            self._log.error("%s (%s)", self._report.last_error, reason)
            return RunEnd(reason)
        self.current = run
        self._log.info("FFmpeg started (pid %d)", run.process.pid)
        # Not run.wait(): even when watching fails (a bug), FFmpeg is reaped and what it left published
        # before the exception reaches the supervision loop's top.
        try:
            run.watch()
        finally:
            outcome = run.finish()
            if outcome.reason is not None:
                self._report.last_error = outcome.last_error
            self._wiring.publish()
        if outcome.reason is None:
            return None
        escalate = stopping() or self._storage.escalate_after(outcome.reason, command.output_dir)
        return RunEnd(outcome.reason, outcome.stable, escalate)

    def round_failed(self, exc: Exception) -> str:
        """An exception reached the supervision loop's top: the run under way (if any) is abandoned, the error
        logged (with its traceback the first time) and the restart reason returned."""
        run, self.current = self.current, None
        if run is not None:
            abandon(run.process)  # make sure its FFmpeg is gone and reaped, whatever state it is in
        resource = is_resource_error(exc)
        reason = RestartReason.RESOURCE_EXHAUSTED if resource else RestartReason.INTERNAL_ERROR
        summary = f"{type(exc).__name__}: {exc}"
        self._report.last_error = f"{reason}: {summary}"
        if resource or summary == self._last_internal_error:
            # Expected (out of descriptors) or already shown with its traceback: one line.
            self._log.error("supervision round failed (%s): %s", reason, summary)
        else:
            self._last_internal_error = summary
            self._log.exception("supervision round failed (%s); the camera restarts with backoff", reason)
        return reason

    # -- what the run tells ---------------------------------------------------------------------

    def _progressed(self, advanced: bool, first_frame: bool) -> None:
        if advanced:
            self._report.last_progress_at = self._clock()
        if first_frame:
            self._wiring.change_state(CameraState.RECORDING, "frames are written")
        else:
            self._wiring.publish()  # without a new frame FFmpeg is alive but stuck: the stall watchdog decides

    def _stalled(self, last_advance: float, now: float) -> None:
        why = f"no progress for {self._settings.stall_timeout:g} s"
        self._wiring.change_state(CameraState.STALLED, why, frames_until=last_advance)

    def _reaped(self) -> None:
        """FFmpeg is gone: fold its counters into the camera's totals before the next run starts from zero."""
        run, self.current = self.current, None
        if run is not None:
            self._report.run_reaped(run)
