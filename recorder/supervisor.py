"""One camera's supervisor: runs its FFmpeg, watches it, restarts it, and publishes a snapshot."""

from __future__ import annotations

import collections
import errno
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import psutil
from tenacity import RetryCallState, Retrying, retry_if_exception

from recorder import ffmpeg_errors
from recorder.config import CameraConfig, SourceKind, SupervisorConfig
from recorder.faults import is_resource_error
from recorder.ffmpeg_process import FFmpegProcess, Launcher, spawn_ffmpeg
from recorder.presets import FFmpegCommand
from recorder.progress import OutputRateMeter, Progress, ProgressParser
from recorder.segments import (
    CompletedSegment,
    check_segment,
    newest_segment_start,
    parse_segment_list_line,
    parse_segment_name,
    salvage_cut_segments,
    segment_duration_buckets,
    unfinished_segments,
)
from recorder.snapshots import CameraSnapshot, Histogram, ResourceUsage, recent_restarts
from recorder.states import CameraState, CameraStateMachine
from recorder.vocabulary import RestartReason
from recorder.write_probe import camera_folder_problem, describe

log = logging.getLogger(__name__)

STDERR_LINES_KEPT = 40
# How long a stalled or stopping FFmpeg gets after SIGTERM before SIGKILL: a frozen process (SIGSTOP,
# stuck in a USB ioctl) never finalizes, and a healthy one needs well under a second.
STALL_KILL_GRACE = 2.0
# CPU and memory of FFmpeg are read every this many progress blocks (progress comes once a second).
RESOURCE_SAMPLE_EVERY = 5
# The loop reports itself alive at least this often, so a wedged supervisor starves systemd's watchdog.
HEARTBEAT_EVERY = 5.0
# A process that survives SIGKILL this long is stuck in the kernel (a USB ioctl): it is abandoned.
UNKILLABLE_AFTER = 10.0
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
# A completed segment smaller than this, or without a duration, is decoded before it is counted: the
# muxer lists a header-only file as a segment when FFmpeg dies into a full disk.
SUSPICIOUS_SEGMENT_BYTES = 8 * 1024

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


class RunBook:
    """Book-keeping of one FFmpeg run; touched only by the supervisor thread."""

    def __init__(self, process: FFmpegProcess, command: FFmpegCommand, monotonic_start: float, wall_start: float):
        self.process = process
        self.command = command
        self.monotonic_start = monotonic_start
        self.wall_start = wall_start
        self.parser = ProgressParser(OutputRateMeter(process.pid, command.output_dir))
        self.last_progress: Progress | None = None
        self.last_advance = monotonic_start  # monotonic time frames last advanced
        self.made_progress = False
        self.completed_names: set[str] = set()
        self.last_segment_end = 0.0  # stream seconds where the open segment starts
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self.kill_reason: str | None = None  # set when the supervisor itself ended the run
        self.progress_blocks = 0
        self.psutil_process: psutil.Process | None = None
        self.cpu_seconds = 0.0


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
        self._current_run: RunBook | None = None
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
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass

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

    def _change_state(self, new: CameraState, why: str = "") -> None:
        """The one way the camera moves (guarded by states.TRANSITIONS); logs the edge and publishes."""
        old = self._machine.change_state(new, paused=self._paused)
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
        self._machine.count_restart(reason)
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
            self._change_state(CameraState.BACKOFF, f"{reason}, restart in {wait:.2f} s")
            self._wait(wait)
        except Exception:  # even the backoff failed: sleep without the wake-up pipe
            self._log.error("cannot wait on the wake-up pipe; sleeping %.2f s", wait)
            self._stopping.wait(wait)

    def _abandon_run(self) -> None:
        """After an exception mid-run: make sure its FFmpeg is gone and reaped, whatever state it is in."""
        run, self._current_run = self._current_run, None
        if run is None:
            return
        try:
            run.process.signal(signal.SIGKILL)
            run.process.popen.wait(timeout=UNKILLABLE_AFTER)
        except Exception:  # one we cannot reap is left to a reaper thread
            threading.Thread(target=run.process.popen.wait, name=f"reap-{run.process.pid}", daemon=True).start()
        finally:
            run.process.close()

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
        wall_start = self._clock()
        try:
            process = self._launcher(command)
        except OSError as exc:
            # Out of descriptors or processes passes by itself; a missing or unrunnable binary does not.
            reason = RestartReason.RESOURCE_EXHAUSTED if is_resource_error(exc) else RestartReason.CONFIG
            self._last_error = f"cannot start FFmpeg: {exc}"
            self._log.error("%s (%s)", self._last_error, reason)
            self._machine.count_restart(reason)
            raise FFmpegEnded(reason) from exc
        run = RunBook(process, command, self._monotonic(), wall_start)
        self._current_run = run
        self._log.info("FFmpeg started (pid %d)", process.pid)
        try:
            self._watch(run)
        finally:
            reason, stable = self._finish(run)
        raise FFmpegEnded(reason, stable=stable, escalate=self._escalate_after(reason, command.output_dir))

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

    def _watch(self, run: RunBook) -> None:
        """Read FFmpeg's pipes until it exits, ending it on stall, stop, pause or unplug."""
        proc = run.process
        buffers = {proc.stdout_fd: b"", proc.stderr_fd: b"", proc.segment_list_fd: b""}
        handlers = {
            proc.stdout_fd: lambda line: self._on_stdout(run, line),
            proc.stderr_fd: lambda line: self._on_stderr(run, line),
            proc.segment_list_fd: lambda line: self._on_segment_line(run, line),
        }
        kill_deadline: float | None = None
        killed = False
        with selectors.PollSelector() as sel:
            for fd in buffers:
                sel.register(fd, selectors.EVENT_READ)
            sel.register(self._wake_read, selectors.EVENT_READ)
            open_fds = set(buffers)
            while open_fds:
                now = self._heartbeat = self._monotonic()
                if kill_deadline is None:
                    reason = self._reason_to_end(run, now)
                    if reason is not None:
                        run.kill_reason = reason
                        kill_deadline = self._begin_kill(run, reason, now)
                elif now >= kill_deadline and not killed:
                    proc.signal(signal.SIGKILL)
                    killed = True
                    kill_deadline = now + UNKILLABLE_AFTER
                elif now >= kill_deadline:
                    break  # unkillable: its pipes may never close; _finish leaves it behind
                stall_at = run.last_advance + self._settings.stall_timeout
                until = kill_deadline if kill_deadline is not None else stall_at
                timeout = min(HEARTBEAT_EVERY, max(0.0, until - now))
                for key, _ in sel.select(timeout):
                    fd = key.fd
                    if fd == self._wake_read:
                        self._drain_wake()
                        continue
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        sel.unregister(fd)
                        open_fds.discard(fd)
                        continue
                    data = buffers[fd] + chunk
                    *lines, buffers[fd] = data.split(b"\n")
                    for raw in lines:
                        handlers[fd](raw.decode("utf-8", "replace"))

    def _reason_to_end(self, run: RunBook, now: float) -> str | None:
        if self._stopping.is_set():
            return "stop"
        if self._paused:
            return "pause"
        if not self._present:
            return RestartReason.HOTPLUG
        if now - run.last_advance > self._settings.stall_timeout:
            return RestartReason.STALL
        return None

    def _begin_kill(self, run: RunBook, reason: str, now: float) -> float:
        if reason == RestartReason.STALL:
            self._machine.stalled_since(run.last_advance, now)
            self._change_state(CameraState.STALLED, f"no progress for {self._settings.stall_timeout:g} s")
        self._log.info("stopping FFmpeg (pid %d): %s", run.process.pid, reason)
        run.process.signal(signal.SIGTERM)
        # A SIGSTOPped FFmpeg only acts on SIGTERM once it runs again; then it finalizes the segment.
        run.process.signal(signal.SIGCONT)
        grace = self._settings.stop_timeout if reason in ("stop", "pause") else STALL_KILL_GRACE
        return now + grace

    def _on_stdout(self, run: RunBook, line: str) -> None:
        progress = run.parser.feed(line)
        if progress is None:
            return
        previous = run.last_progress
        run.last_progress = progress
        run.progress_blocks += 1
        if run.progress_blocks % RESOURCE_SAMPLE_EVERY == 1:
            self._sample_resources(run)
        if progress.frame <= (previous.frame if previous else 0):
            self._publish()  # FFmpeg is alive but no frame came: the stall watchdog decides
            return
        run.last_advance = self._monotonic()
        self._snapshot = replace(self._snapshot, last_progress_at=self._clock())
        if not run.made_progress:
            run.made_progress = True
            self._change_state(CameraState.RECORDING, "frames are written")
        else:
            self._publish()

    def _on_stderr(self, run: RunBook, line: str) -> None:
        line = ffmpeg_errors.scrub(line.rstrip("\r"))
        if line:
            run.stderr.append(line)
            self._log.debug("ffmpeg: %s", line)

    def _on_segment_line(self, run: RunBook, line: str) -> None:
        entry = parse_segment_list_line(line)
        if entry is None:
            return
        name, start, end = entry
        name = Path(name).name
        run.completed_names.add(name)
        run.last_segment_end = end
        path = run.command.output_dir / name
        if self._discard_if_empty(path, end - start):
            return
        self._publish_segment(run, path, end - start)

    def _discard_if_empty(self, path: Path, duration: float) -> bool:
        """A listed segment without a decodable frame (a start into a full disk) is removed and counted."""
        try:
            size = path.stat().st_size
        except OSError:
            return False  # _publish_segment reports a vanished file
        if size >= SUSPICIOUS_SEGMENT_BYTES and duration > 0:
            return False
        reason = check_segment(self._ffprobe, path).discard_reason
        if reason is None:
            return False
        self._remove_discarded(path, reason)
        return True

    def _remove_discarded(self, path: Path, reason: str) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            # Still no recording (it is not counted as one); the log says why the file stays.
            self._log.error("cannot remove %s segment %s: %s", reason, path, exc)
        self._discarded[reason] += 1
        self._on_discard(path)
        self._log.warning("removed %s segment %s (no decodable frame)", reason, path.name)
        self._publish()

    def _publish_segment(self, run: RunBook, path: Path, duration: float) -> None:
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

    def _sample_resources(self, run: RunBook) -> None:
        try:
            if run.psutil_process is None:
                run.psutil_process = psutil.Process(run.process.pid)
            with run.psutil_process.oneshot():
                times = run.psutil_process.cpu_times()
                rss = run.psutil_process.memory_info().rss
        except (psutil.Error, OSError):
            # /proc is unreadable at times (EMFILE, the process just went): skip this sample.
            return
        run.cpu_seconds = times.user + times.system
        self._resources = ResourceUsage(self._finished_cpu + run.cpu_seconds, rss)

    def _finish(self, run: RunBook) -> tuple[str | None, bool]:
        """Reap FFmpeg, check what it left behind, and decide the restart reason."""
        self._sample_resources(run)  # a zombie still shows its CPU time until it is reaped
        proc = run.process
        try:
            returncode = proc.popen.wait(timeout=STALL_KILL_GRACE)
        except subprocess.TimeoutExpired:
            proc.signal(signal.SIGKILL)
            try:
                returncode = proc.popen.wait(timeout=UNKILLABLE_AFTER)
            except subprocess.TimeoutExpired:
                self._log.error("FFmpeg pid %d does not die (stuck in the kernel?); leaving it behind", proc.pid)
                threading.Thread(target=proc.popen.wait, name=f"reap-{proc.pid}", daemon=True).start()
                returncode = -signal.SIGKILL
        proc.close()
        self._finished_cpu += run.cpu_seconds
        self._resources = ResourceUsage(self._finished_cpu, 0)
        progress = run.last_progress
        if progress is not None:
            self._frames_base += progress.frame
            self._dropped_base += progress.drop_frames
            self._duplicated_base += progress.dup_frames
        self._current_run = None
        ran_for = self._monotonic() - run.monotonic_start
        stable = run.made_progress and ran_for >= self._settings.stable_after
        requested = run.kill_reason in ("stop", "pause")
        clean = returncode == 0 or (requested and returncode in (0, 255, -signal.SIGTERM))
        if not clean:
            self._check_unfinished(run)
        if requested:
            self._log.info("FFmpeg stopped cleanly" if clean else f"FFmpeg stopped (exit {returncode})")
            self._publish()
            return None, stable
        if run.kill_reason is not None:
            reason = run.kill_reason  # stall or hotplug: the supervisor's own kill names the restart
        else:
            classified = ffmpeg_errors.classify(run.stderr)
            reason = ffmpeg_errors.restart_reason(classified, exit_code=returncode, signalled=returncode < 0)
            unexplained = classified is ffmpeg_errors.StderrReason.UNKNOWN
            if not run.made_progress and unexplained and reason in (RestartReason.EXITED, RestartReason.CRASHED):
                reason = RestartReason.CRASHED  # died before its first frame: a failed start, never "recording"
        if reason == RestartReason.DEVICE_GONE:
            self._present = self._source_present()
        self._machine.count_restart(reason)
        self._last_error = run.stderr[-1] if run.stderr else f"exit status {returncode}"
        tail = "\n    ".join(run.stderr)
        self._log.warning(
            "FFmpeg ended (exit %s, reason %s) after %.1f s%s",
            returncode,
            reason,
            ran_for,
            f"; last output:\n    {tail}" if tail else "",
        )
        self._publish()
        return reason, stable

    def _check_unfinished(self, run: RunBook) -> None:
        """A segment cut off by a crash is kept if it holds a frame, else removed and counted."""
        progress = run.last_progress
        for cut in salvage_cut_segments(
            self._ffprobe,
            run.command.output_dir,
            self.camera.id,
            run.wall_start,
            run.completed_names,
            progress.out_time_seconds - run.last_segment_end if progress is not None else None,
        ):
            if cut.discard_reason is None:
                self._log.warning("kept segment %s cut off by FFmpeg's exit", cut.path.name)
                self._publish_segment(run, cut.path, cut.duration)
            else:
                self._remove_discarded(cut.path, cut.discard_reason)
        self._publish()
