"""One camera's supervisor: runs its FFmpeg, watches it, restarts it, and publishes a snapshot.

The loop lives here with the two small things only it uses: the source's presence (`SourcePresence`, told
by the udev thread) and the wake-up pipe the thread sleeps on (`WakeUp`). The pieces it wires are their own
modules: the state machine and its backoff (states), the runs and the segments they report (run, over
recorder.ffmpeg.run's one FFmpeg run), the published snapshot (report) and the camera folder's checks
(storage_gate).
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from pathlib import Path

from recorder.camera.ledger import Carried
from recorder.camera.report import CameraReport
from recorder.camera.run import CameraRuns, RunEnd, RunWiring, SegmentEvents
from recorder.camera.states import WAITING_TO_RESTART, CameraStateMachine, state_after_end
from recorder.camera.storage_gate import StorageGate
from recorder.config import CameraConfig, SourceKind, SupervisorConfig
from recorder.domain.vocabulary import CameraState, RestartReason
from recorder.ffmpeg.presets import FFmpegCommand
from recorder.ffmpeg.process import Launcher, spawn_ffmpeg
from recorder.ffmpeg.run import HEARTBEAT_EVERY, PAUSE, STALL_KILL_GRACE, STOP, drain
from recorder.footage.segments import (
    ClockWatch,
    CompletedSegment,
    leftover_segments,
    remove_discarded,
    segment_duration_buckets,
)
from recorder.state.snapshots import CameraSnapshot, ResourceUsage

log = logging.getLogger(__name__)

# Edges logged as warnings: the camera records nothing it should.
_TROUBLED = frozenset(
    {
        CameraState.BACKOFF,
        CameraState.STALLED,
        CameraState.FAILED,
        CameraState.STORAGE_ERROR,
        CameraState.WAITING_FOR_DEVICE,
    }
)

# (device node, name suffix) -> the command; the suffix is 0 but after a backward clock step.
CommandFactory = Callable[[str | None, int], FFmpegCommand]


class SourcePresence:
    """Whether a camera's source is there: a device camera asks its node finder, other sources always are.

    The udev thread tells it (`added`, `removed`); the supervisor thread asks and checks it.

    Both threads write `present` with plain assignments of a bool and each reads it afresh every round: a
    stale read costs one round, never a wrong state for longer.
    """

    def __init__(self, device_node: Callable[[], str | None] | None) -> None:
        self._device_node = device_node  # None for sources that are not devices
        self.present = self.there()
        self._returned = False  # set by the udev thread; taken by the supervisor thread

    def there(self) -> bool:
        """Asks the node finder now, without changing `present`."""
        return self._device_node is None or self._device_node() is not None

    def check(self) -> bool:
        """Asks the node finder and remembers the answer."""
        self.present = self.there()
        return self.present

    def node(self) -> tuple[bool, str | None]:
        """(whether the source is there, its device node); for a non-device source (True, None)."""
        if self._device_node is None:
            return True, None
        node = self._device_node()
        if node is None:
            self.present = False
        return node is not None, node

    def added(self) -> None:
        self.present = True
        self._returned = True

    def removed(self) -> None:
        self.present = False

    def take_return(self) -> bool:
        """True once after the device came back: its next start begins a fresh backoff sequence."""
        returned, self._returned = self._returned, False
        return returned


class WakeUp:
    """Sleeps until woken or a timeout passes, and remembers when its thread last showed it is alive."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self.read_fd, self._write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self._write_fd, False)
        self.heartbeat = monotonic()  # when the sleeping thread last went round

    def wake(self) -> None:
        """Called from any thread; never blocks."""
        if self._write_fd < 0:
            return  # closed for good: nothing left to wake
        try:
            os.write(self._write_fd, b"x")
        except BlockingIOError:
            pass  # already awake: the pipe is full of wake-ups

    def wait(self, seconds: float | None) -> None:
        """Sleep until woken or `seconds` have passed (None: until woken), beating the heart meanwhile."""
        deadline = None if seconds is None else self._monotonic() + seconds
        # poll(2) needs no descriptor of its own, unlike epoll: waiting works even with the fd table full.
        with selectors.PollSelector() as sel:
            sel.register(self.read_fd, selectors.EVENT_READ)
            while True:
                self.heartbeat = self._monotonic()
                left = HEARTBEAT_EVERY if deadline is None else min(HEARTBEAT_EVERY, deadline - self.heartbeat)
                if left <= 0 or sel.select(left):
                    break
        drain(self.read_fd)
        self.heartbeat = self._monotonic()

    def beat(self, now: float) -> None:
        self.heartbeat = now

    def close(self) -> None:
        """Once the sleeping thread is gone. The numbers are forgotten first: a late wake() must not write
        into a reused descriptor."""
        fds, self.read_fd, self._write_fd = (self.read_fd, self._write_fd), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)


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
        # What the camera's earlier supervisors counted (camera/ledger.py): this one's counters go on from there.
        carried: Carried | None = None,
    ) -> None:
        self.camera = camera
        self._command_factory = command_factory
        self._settings = settings
        self._free_space = free_space  # (the daemon's health test calls it as the supervisor would)
        self._clock = clock
        self._monotonic = monotonic
        self._log = logging.LoggerAdapter(log, {"camera": camera.id})
        self._stopping = threading.Event()
        # Said on the edge to `stopped` when the thread ends, and whether that stop is a recording gap.
        self._stop_why, self._stop_is_gap = "daemon stopping", False
        self._paused = False  # retention's stop_recording: the camera is stopped, not failing
        self._thread: threading.Thread | None = None
        self._wakeup = WakeUp(monotonic)
        self._clock_watch = ClockWatch(clock, monotonic)
        self._ffprobe = ffprobe
        self._leftovers_checked = False
        # Device cameras are present when their node finder returns a node; other sources always are.
        self._presence = SourcePresence(device_node if camera.source is SourceKind.DEVICE else None)
        self._machine = CameraStateMachine(
            monotonic, backoff_initial=settings.backoff_initial, backoff_max=settings.backoff_max,
            carried=carried.snapshot if carried is not None else None,
        )  # fmt: skip
        self._report = CameraReport(
            camera.id, self._machine, self._presence.present, segment_duration_buckets(segment_time),
            clock=clock, monotonic=monotonic, carried=carried,
        )  # fmt: skip
        self._segments = SegmentEvents(
            camera.id, self._report, self._publish, on_segment=on_segment, on_discard=on_discard,
            log=self._log, clock=clock,
        )  # fmt: skip
        self._storage = StorageGate(on_write_result=on_write_result, free_space=free_space, log=self._log)
        wiring = RunWiring(
            self._change_state, self._publish, self._end_requested, self._wakeup.beat, self._wakeup.read_fd
        )
        self._runs = CameraRuns(
            camera.id, settings, wiring, report=self._report, segments=self._segments, storage=self._storage,
            launcher=launcher, ffprobe=ffprobe, log=self._log, clock=clock, monotonic=monotonic,
        )  # fmt: skip

    # -- what others read -----------------------------------------------------------------------

    @property
    def snapshot(self) -> CameraSnapshot:
        """The latest published state: an immutable object, read without locks."""
        return self._report.snapshot

    @property
    def resources(self) -> ResourceUsage:
        return self._report.resources

    @property
    def alive(self) -> bool:
        """True while the supervision thread runs (it ends only when asked to, or on a bug)."""
        return self._thread is not None and self._thread.is_alive()

    def healthy(self, stale_after: float) -> bool:
        """The supervision loop is alive and went round within `stale_after` seconds (the watchdog's test)."""
        return self.alive and self._monotonic() - self._wakeup.heartbeat < stale_after

    def active_segments(self) -> list[Path]:
        """Segment files the current FFmpeg may still be writing (never to be deleted)."""
        run = self._runs.current
        return run.unfinished_segments() if run is not None else []

    # -- what others tell it --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"supervisor-{self.camera.id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None, *, why: str = "daemon stopping", gap: bool = False) -> bool:
        """Ask FFmpeg to finalize its segment and the thread to end; True if it ended in time.

        `why` is said on the edge to `stopped`; `gap`: the camera should go on recording (a reload restarts
        it), so the time from this stop to its next supervisor's first frame is a recording gap.
        """
        self._stop_why, self._stop_is_gap = why, gap
        self._stopping.set()
        self._wakeup.wake()
        if self._thread is None:
            return True
        self._thread.join(timeout if timeout is not None else self._settings.stop_timeout + STALL_KILL_GRACE + 1)
        if self._thread.is_alive():
            return False
        self._wakeup.close()
        return True

    def reconfigure(self, camera: CameraConfig, command_factory: CommandFactory) -> None:
        """A reload changed only what FFmpeg's command does not depend on (the name, cleanup_days): take it
        without a restart. The next start builds its command from `command_factory`."""
        self._command_factory = command_factory
        self.camera = camera

    def device_added(self) -> None:
        """udev says the camera is back: start at once, without waiting out a backoff."""
        self._presence.added()  # the next start begins a fresh backoff sequence
        self._wakeup.wake()

    def device_removed(self) -> None:
        """udev says the camera is gone: stop its FFmpeg and wait for it to come back."""
        self._presence.removed()
        self._wakeup.wake()

    def pause(self, paused: bool) -> None:
        """Stop (True) or resume (False) recording, for retention's stop_recording policy."""
        if self._paused != paused:
            self._paused = paused
            self._wakeup.wake()

    # -- the loop -------------------------------------------------------------------------------

    def _change_state(
        self,
        new: CameraState,
        why: str = "",
        *,
        restart: str | None = None,
        stable: bool = False,
        escalate: bool = True,
        frames_until: float | None = None,
        gap: bool = False,
    ) -> None:
        """The one way the camera moves (states.CameraStateMachine.change_state); logs the edge and publishes.

        `gap`: a `stopped` entered now is a recording gap although retention did not pause the camera.
        """
        old = self._machine.change_state(
            new, paused=self._paused or gap, restart=restart, stable=stable, escalate=escalate,
            frames_until=frames_until,
        )  # fmt: skip
        if new in WAITING_TO_RESTART and restart is not None:
            why = f"{why + ', ' if why else ''}restart in {self._machine.restart_in:.2f} s"
        if old is not new:
            level = logging.WARNING if new in _TROUBLED else logging.INFO
            self._log.log(level, "%s -> %s%s", old.value, new.value, f" ({why})" if why else "")
        self._publish()

    def _publish(self, **changes: object) -> None:
        self._report.publish(self._presence.present, self._runs.current, **changes)

    def _main(self) -> None:
        if not self._leftovers_checked:  # a camera a reload added: the daemon's start did not look
            self.discard_leftovers()
        while not self._stopping.is_set():
            # Nothing may end this thread but a stop: a bug or an exhausted resource in one round is
            # logged, counted and followed by a restart with backoff.
            try:
                self._supervise_round()
            except Exception as exc:  # the loop's top, by design
                self._round_failed(exc)
        self._change_state(CameraState.STOPPED, self._stop_why, gap=self._stop_is_gap)

    def _supervise_round(self) -> None:
        if self._paused:
            self._change_state(CameraState.STOPPED, "recording paused by retention")
            self._wakeup.wait(None)
        elif not self._presence.present or not self._presence.check():
            self._change_state(CameraState.WAITING_FOR_DEVICE, "source absent")
            # udev wakes us on `add`; the poll covers systems without udev events.
            self._wakeup.wait(self._settings.presence_check_interval)
            self._presence.check()
        else:
            ended = self._record_once()
            if ended is not None:
                self._after_end(ended)

    def _after_end(self, ended: RunEnd) -> None:
        """Count the restart with the edge that follows the run, and wait out the backoff if one does."""
        stopping, paused = self._stopping.is_set(), self._paused
        retry = not stopping and not paused and self._presence.present and self._presence.there()
        state = state_after_end(ended.reason, retry=retry, stopping=stopping, paused=paused)
        # A backoff edge says the wait (the run's end was logged with its reason); an edge to where the camera
        # is held says the reason.
        why = "" if retry else ended.reason
        self._change_state(state, why, restart=ended.reason, stable=ended.stable, escalate=ended.escalate)
        if retry:
            self._wakeup.wait(self._machine.restart_in)

    def _round_failed(self, exc: Exception) -> None:
        """An exception reached the loop's top: clean up, log once, count, and back off before trying again."""
        reason = self._runs.round_failed(exc)
        try:
            self._change_state(CameraState.BACKOFF, reason, restart=reason)
            self._wakeup.wait(self._machine.restart_in)
        except Exception:  # even the backoff failed: sleep without the wake-up pipe
            self._log.error("cannot wait on the wake-up pipe; sleeping %.2f s", self._machine.restart_in)
            self._stopping.wait(self._machine.restart_in)

    def discard_leftovers(self) -> None:
        """Header-only files an earlier FFmpeg left (a SIGKILL right after a cut, a start into a full disk):
        removed and counted as discarded, as a run's end does for its own, before this camera records. The
        daemon's start calls it before the first scan, so no count of the folder ever includes them."""
        self._leftovers_checked = True
        try:
            folder = self._command_factory(None, 0).output_dir
            for path, reason in leftover_segments(self._ffprobe, folder, self.camera.id):
                remove_discarded(path, reason, self._log)
                self._segments.discarded(path, reason)
        except Exception:  # a look at the folder; recording matters more
            self._log.exception("could not look for header-only segments left from before this start")

    # -- one FFmpeg run -------------------------------------------------------------------------

    def _holding(self) -> bool:
        """A stop or a pause holds the camera: no start now."""
        return self._stopping.is_set() or self._paused

    def _record_once(self) -> RunEnd | None:
        """Start FFmpeg and see its run end; None when no start happened or the daemon ended it."""
        if self._presence.take_return():
            self._machine.forget_failures()
        there, node = self._presence.node()
        if self._holding() or not there:
            return None  # the loop goes round: stopped, or waiting for the device
        command = self._command_factory(node, 0)
        self._storage.wait_until_writable(
            command.output_dir,
            keep_trying=lambda: not self._holding() and self._presence.present,
            refused=self._storage_refused,
            sleep=self._wakeup.wait,
        )
        if self._holding():
            return None
        suffix = self._storage.name_suffix_for_start(
            command.output_dir, self.camera.id, self._clock(), self._wakeup.wait
        )
        if suffix:
            command = self._command_factory(node, suffix)
        if self._stopping.is_set():
            return None
        self._clock_watch.stepped_back()  # a step before this start is behind us: the names above are fresh
        self._change_state(CameraState.STARTING)
        ended = self._runs.run(command, stopping=self._stopping.is_set)
        if ended is not None and ended.reason == RestartReason.DEVICE_GONE:
            self._presence.check()
        return ended

    def _storage_refused(self, error: str) -> None:
        self._report.last_error = error
        self._change_state(CameraState.STORAGE_ERROR, error)

    def _end_requested(self) -> str | None:
        """Asked by the run each round: whether the supervisor wants it over, and why."""
        if self._stopping.is_set():
            return STOP
        if self._paused:
            return PAUSE
        if not self._presence.present:
            return RestartReason.HOTPLUG
        step = self._clock_watch.stepped_back()
        if step:
            # FFmpeg names the next segment by the wall clock: in the past now, where names exist already.
            self._log.warning("the clock stepped back %.1f s: restarting FFmpeg with fresh segment names", step)
            return RestartReason.CLOCK_STEP
        return None
