"""One camera's supervisor: runs its FFmpeg, watches it, restarts it, and publishes a snapshot."""

from __future__ import annotations

import collections
import errno
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from tenacity import RetryCallState, Retrying, retry_if_exception

from recorder.config import CameraConfig, SourceKind, SupervisorConfig
from recorder.faults import is_resource_error
from recorder.ffmpeg_process import Launcher, spawn_ffmpeg
from recorder.ffmpeg_run import (
    HEARTBEAT_EVERY,
    PAUSE,
    STALL_KILL_GRACE,
    STOP,
    FFmpegRun,
    RunHooks,
    RunOutcome,
    abandon,
    drain,
)
from recorder.presets import FFmpegCommand
from recorder.segments import (
    CompletedSegment,
    newest_segment_start,
    parse_segment_name,
    segment_duration_buckets,
    unfinished_segments,
)
from recorder.snapshots import CameraSnapshot, Histogram, ResourceUsage, recent_restarts
from recorder.states import CameraState, CameraStateMachine
from recorder.vocabulary import RestartReason
from recorder.write_probe import camera_folder_problem, describe

log = logging.getLogger(__name__)

# Waiting for a new second before a restart bounds at this; a larger gap means the clock stepped back.
NAME_COLLISION_MAX_WAIT = 3.0

# A folder that refuses writes is probed this often; recording resumes within about this long once it works.
STORAGE_PROBE_EVERY = 1.0
# After ENOSPC that retention could not cure, FFmpeg starts again only once this much is free: a start into
# a nearly full disk would only leave another empty file behind.
DISK_FULL_RESUME_BYTES = 1 << 20
# Out of descriptors, memory or processes: the resource comes back by itself, so retrying is cheap and
# the wait is capped lower than backoff_max.
RESOURCE_RETRY_MAX = 5.0

CommandFactory = Callable[[str | None], FFmpegCommand]


class FFmpegEnded(Exception):
    """One FFmpeg run is over; `reason` is a restart reason, or None when the daemon asked for it."""

    def __init__(self, reason: str | None, *, stable: bool = False, escalate: bool = True) -> None:
        super().__init__(reason or "stopped")
        self.reason = reason
        self.stable = stable
        # False when the cause was dealt with (retention freed space, the folder is handled by the storage
        # probe): the next start comes after backoff_initial, and the failure does not count towards more.
        self.escalate = escalate


class CameraSupervisor:
    """Keeps one camera recording; one camera's trouble never touches another's supervisor."""

    def __init__(
        self,
        camera: CameraConfig,
        command_factory: CommandFactory,
        settings: SupervisorConfig,
        *,
        segment_time: float,
        ffprobe: str,
        on_segment: Callable[[CompletedSegment], None] = lambda segment: None,
        # Told the result of each write probe in the camera folder (an error line, or None when it worked).
        on_write_result: Callable[[str | None], None] = lambda error: None,
        # Asked to free space after ENOSPC; returns whether anything was deleted.
        free_space: Callable[[], bool] = lambda: False,
        # Told of a segment the supervisor removed itself (no decodable frame), so no index keeps it.
        on_discard: Callable[[Path], None] = lambda path: None,
        device_node: Callable[[], str | None] | None = None,
        launcher: Launcher = spawn_ffmpeg,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.camera = camera
        self._command_factory = command_factory
        self._settings = settings
        self._ffprobe = ffprobe
        self._on_segment = on_segment
        self._on_write_result = on_write_result
        self._free_space = free_space
        self._on_discard = on_discard
        self._last_internal_error: str | None = None  # the last one logged with its traceback
        self._disk_full_uncured = False  # ENOSPC that retention could not cure: wait for free space
        # Device cameras are present when this returns a node; other sources are always present.
        self._device_node = device_node if camera.source is SourceKind.DEVICE else None
        self._launcher = launcher
        self._clock = clock
        self._monotonic = monotonic
        self._log = logging.LoggerAdapter(log, {"camera": camera.id})

        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._stopping = threading.Event()
        self._paused = False  # retention's stop_recording: the camera is stopped, not failing
        self._thread: threading.Thread | None = None
        self._current_run: FFmpegRun | None = None
        self._finished_cpu = 0.0
        self._heartbeat = monotonic()  # when the loop last went round

        # Written by the udev thread too (device_added, device_removed): plain assignments, read each round.
        self._present = self._source_present()
        # Set by the udev thread when the camera comes back; the supervisor thread then forgets its failures.
        self._device_returned = False
        # Fields only the supervisor thread writes; the snapshot is their published copy.
        self._machine = CameraStateMachine(monotonic)  # state, gap time, restarts, consecutive failures
        self._frames_base = self._dropped_base = self._duplicated_base = 0
        self._discarded: collections.Counter[str] = collections.Counter()
        self._last_error: str | None = None
        self._snapshot = CameraSnapshot(
            camera=camera.id,
            state=self._machine.state,
            present=self._present,
            taken_at=self._machine.since,
            segment_durations=Histogram.empty(segment_duration_buckets(segment_time)),
        )
        self._resources = ResourceUsage()

    # -- what others read -----------------------------------------------------------------------

    @property
    def snapshot(self) -> CameraSnapshot:
        """The latest published state: an immutable object, read without locks."""
        return self._snapshot

    @property
    def resources(self) -> ResourceUsage:
        return self._resources

    @property
    def alive(self) -> bool:
        """True while the supervision thread runs (it ends only when asked to, or on a bug)."""
        return self._thread is not None and self._thread.is_alive()

    def active_segments(self) -> list[Path]:
        """Segment files the current FFmpeg may still be writing (never to be deleted)."""
        run = self._current_run
        if run is None:
            return []
        return unfinished_segments(run.command.output_dir, self.camera.id, run.wall_start, set(run.completed_names))

    # -- what others tell it --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"supervisor-{self.camera.id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask FFmpeg to finalize its segment and the thread to end; True if it ended in time."""
        self._stopping.set()
        self._wake()
        if self._thread is None:
            return True
        self._thread.join(timeout if timeout is not None else self._settings.stop_timeout + STALL_KILL_GRACE + 1)
        if self._thread.is_alive():
            return False
        # Forget the numbers before closing: a late wake-up must not write into a reused descriptor.
        fds, self._wake_read, self._wake_write = (self._wake_read, self._wake_write), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        return True

    def device_added(self) -> None:
        """udev says the camera is back: start at once, without waiting out a backoff."""
        self._present = True
        self._device_returned = True  # the next start begins a fresh backoff sequence
        self._wake()

    def device_removed(self) -> None:
        """udev says the camera is gone: stop its FFmpeg and wait for it to come back."""
        self._present = False
        self._wake()

    def pause(self, paused: bool) -> None:
        """Stop (True) or resume (False) recording, for retention's stop_recording policy."""
        if self._paused != paused:
            self._paused = paused
            self._wake()

    def _wake(self) -> None:
        if self._wake_write < 0:
            return  # stopped for good: nothing left to wake
        try:
            os.write(self._wake_write, b"x")
        except BlockingIOError:
            pass  # already awake: the pipe is full of wake-ups

    def _drain_wake(self) -> None:
        drain(self._wake_read)

    def _wait(self, seconds: float | None) -> None:
        """Sleep until woken (stop, hot-plug, pause) or `seconds` have passed, beating the heart meanwhile."""
        deadline = None if seconds is None else self._monotonic() + seconds
        # poll(2) needs no descriptor of its own, unlike epoll: waiting works even with the fd table full.
        with selectors.PollSelector() as sel:
            sel.register(self._wake_read, selectors.EVENT_READ)
            while True:
                self._heartbeat = self._monotonic()
                left = HEARTBEAT_EVERY if deadline is None else min(HEARTBEAT_EVERY, deadline - self._heartbeat)
                if left <= 0 or sel.select(left):
                    break
        self._drain_wake()
        self._heartbeat = self._monotonic()

    def healthy(self, stale_after: float) -> bool:
        """The supervision loop is alive and went round within `stale_after` seconds (the watchdog's test)."""
        return self.alive and self._monotonic() - self._heartbeat < stale_after

    # -- the state machine ----------------------------------------------------------------------

    def _change_state(self, new: CameraState, why: str = "", *, restart: str | None = None) -> None:
        """The one way the camera moves (guarded by states.TRANSITIONS); logs the edge and publishes."""
        old = self._machine.change_state(new, paused=self._paused, restart=restart)
        if old is not new:
            troubled = new in (
                CameraState.BACKOFF,
                CameraState.STALLED,
                CameraState.FAILED,
                CameraState.STORAGE_ERROR,
            )
            level = logging.WARNING if troubled or new is CameraState.WAITING_FOR_DEVICE else logging.INFO
            self._log.log(level, "%s -> %s%s", old.value, new.value, f" ({why})" if why else "")
        self._publish()

    def _publish(self, **changes: object) -> None:
        run = self._current_run
        progress = run.last_progress if run else None
        recording = self._machine.state is CameraState.RECORDING
        now = self._monotonic()
        self._snapshot = replace(
            self._snapshot,
            state=self._machine.state,
            present=self._present,
            taken_at=now,
            restarts=MappingProxyType(dict(self._machine.restarts)),
            discarded=MappingProxyType(dict(self._discarded)),
            # The gap of earlier states plus the current one's time so far when it counts.
            gap_seconds=self._machine.gap_so_far(now),
            gap_growing=self._machine.counting_gap,
            frames=self._frames_base + (progress.frame if progress else 0),
            dropped_frames=self._dropped_base + (progress.drop_frames if progress else 0),
            duplicated_frames=self._duplicated_base + (progress.dup_frames if progress else 0),
            fps=progress.fps if progress and recording else 0.0,
            speed=progress.speed if progress and recording else 0.0,
            bitrate_bits_per_second=(progress.bitrate_bits_per_second if progress and recording else 0.0),
            ffmpeg_pid=run.process.pid if run else None,
            last_error=self._last_error,
            recent_restarts=recent_restarts(self._snapshot, self._machine.restarts, self._clock(), self._last_error),
            **changes,
        )

    def _source_present(self) -> bool:
        return self._device_node is None or self._device_node() is not None

    def _main(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception(self._should_retry),
            wait=self._backoff_seconds,
            sleep=self._backoff_sleep,
            before_sleep=self._enter_backoff,
            reraise=True,
        )
        while not self._stopping.is_set():
            # Nothing may end this thread but a stop: a bug or an exhausted resource in one round is
            # logged, counted and followed by a restart with backoff.
            try:
                self._supervise_round(retrying)
            except Exception as exc:  # the loop's top, by design
                self._round_failed(exc)
        self._change_state(CameraState.STOPPED, "daemon stopping")

    def _supervise_round(self, retrying: Retrying) -> None:
        if self._paused:
            self._change_state(CameraState.STOPPED, "recording paused by retention")
            self._wait(None)
            return
        if not self._present or not self._source_present():
            self._present = False
            self._change_state(CameraState.WAITING_FOR_DEVICE, "source absent")
            # udev wakes us on `add`; the poll covers systems without udev events.
            self._wait(self._settings.presence_check_interval)
            self._present = self._source_present()
            return
        try:
            retrying(self._record_once)
        except FFmpegEnded:
            pass  # stop, pause or a vanished device: the loop above decides what comes next

    def _round_failed(self, exc: Exception) -> None:
        """An exception reached the loop's top: clean up, log once, count, and back off before trying again."""
        self._abandon_run()
        resource = is_resource_error(exc)
        reason = RestartReason.RESOURCE_EXHAUSTED if resource else RestartReason.INTERNAL_ERROR
        summary = f"{type(exc).__name__}: {exc}"
        self._last_error = f"{reason}: {summary}"
        if resource or summary == self._last_internal_error:
            # Expected (out of descriptors) or already shown with its traceback: one line.
            self._log.error("supervision round failed (%s): %s", reason, summary)
        else:
            self._last_internal_error = summary
            self._log.exception("supervision round failed (%s); the camera restarts with backoff", reason)
        cap = RESOURCE_RETRY_MAX if resource else self._settings.backoff_max
        wait = self._machine.next_backoff(self._settings.backoff_initial, min(cap, self._settings.backoff_max))
        try:
            self._change_state(CameraState.BACKOFF, f"{reason}, restart in {wait:.2f} s", restart=reason)
            self._wait(wait)
        except Exception:  # even the backoff failed: sleep without the wake-up pipe
            self._log.error("cannot wait on the wake-up pipe; sleeping %.2f s", wait)
            self._stopping.wait(wait)

    def _abandon_run(self) -> None:
        """After an exception mid-run: make sure its FFmpeg is gone and reaped, whatever state it is in."""
        run, self._current_run = self._current_run, None
        if run is not None:
            abandon(run.process)

    def _should_retry(self, exc: BaseException) -> bool:
        return (
            isinstance(exc, FFmpegEnded)
            and exc.reason is not None
            and not self._stopping.is_set()
            and not self._paused
            and self._present
            and self._source_present()
        )

    def _backoff_seconds(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        ended = exc if isinstance(exc, FFmpegEnded) else None
        if ended is not None and not ended.escalate:
            # The cause was dealt with (space freed, the folder is probed before the next start).
            if ended.stable:
                self._machine.failures = 0
            return self._settings.backoff_initial
        cap = self._settings.backoff_max
        if ended is not None and ended.reason == RestartReason.RESOURCE_EXHAUSTED:
            cap = min(cap, RESOURCE_RETRY_MAX)
        wait = self._machine.next_backoff(
            self._settings.backoff_initial, cap, stable=ended is not None and ended.stable
        )
        if ended is not None and ended.reason == RestartReason.CONFIG:
            # A bad option or a permission problem will not fix itself within seconds.
            return self._settings.backoff_max
        return wait

    def _enter_backoff(self, retry_state: RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        state = (
            CameraState.FAILED
            if isinstance(exc, FFmpegEnded) and exc.reason == RestartReason.CONFIG
            else CameraState.BACKOFF
        )
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        self._change_state(state, f"restart in {wait:.2f} s")

    def _backoff_sleep(self, seconds: float) -> None:
        self._wait(seconds)

    # -- one FFmpeg run -------------------------------------------------------------------------

    def _record_once(self) -> None:
        if self._device_returned:
            self._device_returned = False
            self._machine.failures = 0
        if self._stopping.is_set() or self._paused:
            raise FFmpegEnded(None)
        node = self._device_node() if self._device_node else None
        if self._device_node is not None and node is None:
            self._present = False
            raise FFmpegEnded(RestartReason.DEVICE_GONE)
        command = self._command_factory(node)
        self._wait_until_writable(command.output_dir)
        if self._stopping.is_set() or self._paused:
            raise FFmpegEnded(None)
        self._wait_for_unused_name(command.output_dir)
        if self._stopping.is_set():
            raise FFmpegEnded(None)
        self._change_state(CameraState.STARTING)
        try:
            run = FFmpegRun(
                self._launcher,
                command,
                self._settings,
                camera_id=self.camera.id,
                ffprobe=self._ffprobe,
                wake_fd=self._wake_read,
                hooks=self._run_hooks,
                log=self._log,
                monotonic=self._monotonic,
                clock=self._clock,
            )
        except OSError as exc:
            # Out of descriptors or processes passes by itself; a missing or unrunnable binary does not.
            reason = RestartReason.RESOURCE_EXHAUSTED if is_resource_error(exc) else RestartReason.CONFIG
            self._last_error = f"cannot start FFmpeg: {exc}"
            self._log.error("%s (%s)", self._last_error, reason)
            self._machine.count_restart(reason)
            raise FFmpegEnded(reason) from exc
        self._current_run = run
        self._log.info("FFmpeg started (pid %d)", run.process.pid)
        # Not run.wait(): even when watching fails (a bug), FFmpeg is reaped and its end counted and published
        # before the exception reaches the loop's top.
        try:
            run.watch()
        finally:
            outcome = self._ended(run.finish())
        reason = outcome.reason
        raise FFmpegEnded(reason, stable=outcome.stable, escalate=self._escalate_after(reason, command.output_dir))

    def _ended(self, outcome: RunOutcome) -> RunOutcome:
        """Account a finished run: count its restart and publish what it left."""
        if outcome.reason is not None:
            if outcome.reason == RestartReason.DEVICE_GONE:
                self._present = self._source_present()
            self._machine.count_restart(outcome.reason)
            self._last_error = outcome.last_error
        self._publish()
        return outcome

    def _escalate_after(self, reason: str | None, folder: Path) -> bool:
        """After a run that ended by itself: deal with storage causes; False when the backoff should not grow."""
        if reason is None or self._stopping.is_set():
            return True
        # Any failed write (EROFS, EACCES, EIO, ENOSPC...) shows here whatever FFmpeg printed: the next start
        # waits in storage_error until the folder takes writes again, without a growing backoff.
        problem = camera_folder_problem(folder)
        if problem is not None and is_resource_error(problem):
            raise problem  # out of descriptors is no storage fault: the loop's top counts it
        if problem is not None:
            self._on_write_result(describe(problem))
            return False
        if reason != RestartReason.DISK_FULL:
            return True
        freed = self._free_space()
        if freed:
            self._log.info("disk was full: retention freed space, FFmpeg restarts at once")
            return False
        if self._avail(folder) < DISK_FULL_RESUME_BYTES:
            self._disk_full_uncured = True  # the next start waits in storage_error for space
            return False
        return True

    @staticmethod
    def _avail(folder: Path) -> int:
        try:
            st = os.statvfs(folder)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def _wait_until_writable(self, folder: Path) -> None:
        """Before a start: the camera folder must exist, be a real folder and take a write (and have room).

        Until it does, the camera is in storage_error and the folder is probed every STORAGE_PROBE_EVERY;
        a stop, pause or unplug ends the wait.
        """
        reported = False
        while not self._stopping.is_set() and not self._paused and self._present:
            problem = camera_folder_problem(folder)
            if problem is not None and is_resource_error(problem):
                raise problem  # out of descriptors is no storage fault: the loop's top counts it
            if problem is None and self._disk_full_uncured:
                if self._avail(folder) >= DISK_FULL_RESUME_BYTES:
                    self._disk_full_uncured = False
                else:
                    problem = OSError(errno.ENOSPC, "disk full, nothing of this recorder left to delete", str(folder))
                    # Retention may free space meanwhile (its own schedule), or an operator does.
            if problem is None:
                if reported:
                    self._on_write_result(None)
                    self._log.info("camera folder %s takes writes again", folder)
                return
            error = describe(problem)
            self._on_write_result(error)
            if not reported or self._last_error != error:
                self._last_error = error
                self._change_state(CameraState.STORAGE_ERROR, error)
                reported = True
            self._wait(STORAGE_PROBE_EVERY)

    def _wait_for_unused_name(self, folder: Path) -> None:
        """Start in a later second than the newest segment, so FFmpeg never reuses a file name."""
        newest = newest_segment_start(folder, self.camera.id)
        if newest is None:
            return
        wait = newest + 1.0 - self._clock()
        if wait > NAME_COLLISION_MAX_WAIT:
            self._log.error(
                "the clock is %.0f s behind the newest segment name; new segments may reuse old names", wait
            )
        elif wait > 0:
            self._wait(wait)

    # -- what the run tells it ------------------------------------------------------------------

    @property
    def _run_hooks(self) -> RunHooks:
        return RunHooks(
            end_requested=self._end_requested,
            tick=self._tick,
            progressed=self._progressed,
            stalled=self._stalled,
            segment_done=self._publish_segment,
            segment_discarded=self._count_discarded,
            resources=self._resources_sampled,
            reaped=self._reaped,
        )

    def _end_requested(self) -> str | None:
        if self._stopping.is_set():
            return STOP
        if self._paused:
            return PAUSE
        return None if self._present else RestartReason.HOTPLUG

    def _tick(self, now: float) -> None:
        self._heartbeat = now

    def _stalled(self, last_advance: float, now: float) -> None:
        self._machine.stalled_since(last_advance, now)
        self._change_state(CameraState.STALLED, f"no progress for {self._settings.stall_timeout:g} s")

    def _progressed(self, advanced: bool, first_frame: bool) -> None:
        if advanced:
            self._snapshot = replace(self._snapshot, last_progress_at=self._clock())
        if first_frame:
            self._change_state(CameraState.RECORDING, "frames are written")
        else:
            self._publish()  # without a new frame FFmpeg is alive but stuck: the stall watchdog decides

    def _count_discarded(self, path: Path, reason: str) -> None:
        self._discarded[reason] += 1
        self._on_discard(path)
        self._log.warning("removed %s segment %s (no decodable frame)", reason, path.name)
        self._publish()

    def _publish_segment(self, path: Path, duration: float) -> None:
        try:
            size = path.stat().st_size
        except OSError as exc:
            self._log.warning("completed segment %s is gone: %s", path, exc)
            return
        parsed = parse_segment_name(path.name)
        start = parsed.start if parsed else self._clock() - duration
        snap = self._snapshot
        self._publish(
            segments_completed=snap.segments_completed + 1,
            written_bytes=snap.written_bytes + size,
            segment_durations=snap.segment_durations.observe(duration),
            last_segment_at=self._clock(),
        )
        self._log.info("segment %s completed: %.1f s, %d bytes", path.name, duration, size)
        try:
            self._on_segment(CompletedSegment(self.camera.id, path, start, duration, size))
        except Exception:
            self._log.exception("storage accounting failed for %s", path)

    def _resources_sampled(self, run_cpu_seconds: float, rss: int) -> None:
        self._resources = ResourceUsage(self._finished_cpu + run_cpu_seconds, rss)

    def _reaped(self) -> None:
        """FFmpeg is gone: fold its counters into the camera's totals before the next run starts from zero."""
        run, self._current_run = self._current_run, None
        if run is None:
            return
        self._finished_cpu += run.cpu_seconds
        self._resources = ResourceUsage(self._finished_cpu, 0)
        progress = run.last_progress
        if progress is not None:
            self._frames_base += progress.frame
            self._dropped_base += progress.drop_frames
            self._duplicated_base += progress.dup_frames
