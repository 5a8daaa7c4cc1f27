"""One FFmpeg run: started through the launcher, its pipes read, ended on request or stall, reaped, classified.

The run knows FFmpeg's pipes and signals; the supervisor that owns it knows the camera's state, snapshot
and storage. What the supervisor must hear while the run goes on (a frame, a stall, a completed or
discarded segment, a resource sample) reaches it through `RunHooks`; how the run ended is a `RunOutcome`.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recorder.config import SupervisorConfig
from recorder.domain.vocabulary import RestartReason
from recorder.ffmpeg import errors as ffmpeg_errors
from recorder.ffmpeg.presets import FFmpegCommand
from recorder.ffmpeg.process import FFmpegProcess, Launcher
from recorder.ffmpeg.progress import OutputRateMeter, Progress, ProgressParser
from recorder.footage.segments import (
    SUSPICIOUS_SEGMENT_BYTES,
    check_segment,
    parse_segment_list_line,
    remove_discarded,
    salvage_cut_segments,
    unfinished_segments,
)

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

# Ends the daemon asks for: FFmpeg finalizes its segment, and no restart follows or is counted.
STOP = "stop"
PAUSE = "pause"
REQUESTED_ENDS = (STOP, PAUSE)


def drain(fd: int) -> None:
    """Read a non-blocking wake-up pipe empty."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _ignore(*_args: object) -> None:
    return None


@dataclass(frozen=True)
class RunHooks:
    """What the run tells its owner while it goes on; each defaults to doing nothing."""

    # Asked each round: STOP, PAUSE or a restart reason (hotplug) when the owner wants the run over.
    end_requested: Callable[[], str | None] = lambda: None
    # Each round of the pipe loop, with the monotonic time: the owner's heartbeat.
    tick: Callable[[float], None] = _ignore
    # A progress block was read: (frames advanced, first frame of the run).
    progressed: Callable[[bool, bool], None] = _ignore
    # No frame for stall_timeout: (monotonic time frames last advanced, now); the kill follows.
    stalled: Callable[[float, float], None] = _ignore
    # A segment is complete and kept: (path, duration in seconds).
    segment_done: Callable[[Path, float], None] = _ignore
    # A segment without a decodable frame was removed: (path, discard reason).
    segment_discarded: Callable[[Path, str], None] = _ignore
    # CPU seconds of this run so far and its resident memory, read from /proc.
    resources: Callable[[float, int], None] = _ignore
    # FFmpeg is reaped and its pipes closed; the segment cut off by a crash is looked at next.
    reaped: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class RunOutcome:
    """How one FFmpeg run ended."""

    reason: str | None  # the restart reason; None when the daemon asked for the end (stop, pause)
    stable: bool  # it wrote frames for at least stable_after: the backoff starts over
    returncode: int  # as Popen gives it: negative when a signal ended it
    ran_for: float  # seconds from start to reaping
    last_error: str | None  # FFmpeg's last stderr line or "exit status N"; None when requested

    @property
    def exit_signal(self) -> int | None:
        """The signal that ended FFmpeg, if one did."""
        return -self.returncode if self.returncode < 0 else None


class FFmpegRun:
    """Starts one FFmpeg through `launcher` (construction raises the launcher's OSError) and sees it end."""

    def __init__(
        self,
        launcher: Launcher,
        command: FFmpegCommand,
        settings: SupervisorConfig,
        *,
        camera_id: str,
        ffprobe: str,
        wake_fd: int,
        hooks: RunHooks,
        log: logging.LoggerAdapter[logging.Logger],
        monotonic: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self.command = command
        self._settings = settings
        self._camera_id = camera_id
        self._ffprobe = ffprobe
        self._wake_fd = wake_fd  # readable when the owner has news (stop, pause, unplug)
        self._hooks = hooks
        self._log = log
        self._monotonic = monotonic
        self.wall_start = clock()
        self.process: FFmpegProcess = launcher(command)
        self.monotonic_start = monotonic()
        self.parser = ProgressParser(OutputRateMeter(self.process.pid, command.output_dir))
        self.last_progress: Progress | None = None
        self.last_advance = self.monotonic_start  # monotonic time frames last advanced
        self.made_progress = False
        self.completed_names: set[str] = set()
        self.last_segment_end = 0.0  # stream seconds where the open segment starts
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self.kill_reason: str | None = None  # set when the run was ended on the owner's request or a stall
        self._progress_blocks = 0
        self.cpu_seconds = 0.0

    def wait(self) -> RunOutcome:
        """Read the pipes until FFmpeg exits (ending it when asked or stalled), then reap and classify it."""
        try:
            self.watch()
        finally:
            outcome = self.finish()
        return outcome

    def unfinished_segments(self) -> list[Path]:
        """Segment files this FFmpeg may still be writing: started since the run began, never listed complete."""
        return unfinished_segments(
            self.command.output_dir, self._camera_id, self.wall_start, set(self.completed_names),
            self.command.name_suffix,
        )  # fmt: skip

    # -- while it runs ----------------------------------------------------------------------------

    def watch(self) -> None:
        """Read FFmpeg's pipes until it exits, ending it on stall, stop, pause or unplug."""
        proc = self.process
        buffers = {proc.stdout_fd: b"", proc.stderr_fd: b"", proc.segment_list_fd: b""}
        handlers: dict[int, Callable[[list[str]], None]] = {
            proc.stdout_fd: self._on_stdout,
            proc.stderr_fd: self._on_stderr,
            proc.segment_list_fd: self._on_segment_lines,
        }
        kill_deadline: float | None = None
        killed = False
        # select.poll itself, not selectors: this loop wakes about once a second per camera for a progress
        # block, and the selector's key bookkeeping was a visible part of the supervisor's CPU.
        poller = select.poll()
        for fd in (*buffers, self._wake_fd):
            poller.register(fd, select.POLLIN)
        open_fds = set(buffers)
        while open_fds:
            now = self._monotonic()
            self._hooks.tick(now)
            if kill_deadline is None:
                reason = self._reason_to_end(now)
                if reason is not None:
                    self.kill_reason = reason
                    kill_deadline = self._begin_kill(reason, now)
            elif now >= kill_deadline and not killed:
                proc.signal(signal.SIGKILL)
                killed = True
                kill_deadline = now + UNKILLABLE_AFTER
            elif now >= kill_deadline:
                break  # unkillable: its pipes may never close; finish() leaves it behind
            stall_at = self.last_advance + self._settings.stall_timeout
            until = kill_deadline if kill_deadline is not None else stall_at
            timeout = min(HEARTBEAT_EVERY, max(0.0, until - now))
            for fd, _event in poller.poll(math.ceil(timeout * 1000)):
                if fd == self._wake_fd:
                    drain(fd)
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    continue
                # Whole lines only; a newline byte never occurs inside a UTF-8 sequence, so they decode at once.
                complete, newline, buffers[fd] = (buffers[fd] + chunk).rpartition(b"\n")
                if newline:
                    handlers[fd](complete.decode("utf-8", "replace").split("\n"))

    def _reason_to_end(self, now: float) -> str | None:
        requested = self._hooks.end_requested()
        if requested is not None:
            return requested
        if now - self.last_advance > self._settings.stall_timeout:
            return RestartReason.STALL
        return None

    def _begin_kill(self, reason: str, now: float) -> float:
        if reason == RestartReason.STALL:
            self._hooks.stalled(self.last_advance, now)
        self._log.info("stopping FFmpeg (pid %d): %s", self.process.pid, reason)
        self.process.signal(signal.SIGTERM)
        # A SIGSTOPped FFmpeg only acts on SIGTERM once it runs again; then it finalizes the segment.
        self.process.signal(signal.SIGCONT)
        grace = self._settings.stop_timeout if reason in REQUESTED_ENDS else STALL_KILL_GRACE
        return now + grace

    def _on_stdout(self, lines: list[str]) -> None:
        for progress in self.parser.feed_lines(lines):
            self._on_progress(progress)

    def _on_progress(self, progress: Progress) -> None:
        previous = self.last_progress
        self.last_progress = progress
        self._progress_blocks += 1
        if self._progress_blocks % RESOURCE_SAMPLE_EVERY == 1:
            self.sample_resources()
        if progress.frame <= (previous.frame if previous else 0):
            self._hooks.progressed(False, False)  # FFmpeg is alive but no frame came: the stall watchdog decides
            return
        self.last_advance = self._monotonic()
        first_frame = not self.made_progress
        self.made_progress = True
        self._hooks.progressed(True, first_frame)

    def _on_stderr(self, lines: list[str]) -> None:
        for raw in lines:
            line = ffmpeg_errors.scrub(raw.rstrip("\r"))
            if line:
                self.stderr.append(line)
                self._log.debug("ffmpeg: %s", line)

    def _on_segment_lines(self, lines: list[str]) -> None:
        for line in lines:
            entry = parse_segment_list_line(line)
            if entry is None:
                continue
            name, start, end = entry
            name = Path(name).name
            self.completed_names.add(name)
            self.last_segment_end = end
            path = self.command.output_dir / name
            if not self._discard_if_empty(path, end - start):
                self._hooks.segment_done(path, end - start)

    def _discard_if_empty(self, path: Path, duration: float) -> bool:
        """A listed segment without a decodable frame (a start into a full disk) is removed and counted."""
        try:
            size = path.stat().st_size
        except OSError:
            return False  # the owner reports a vanished file
        if size >= SUSPICIOUS_SEGMENT_BYTES and duration > 0:
            return False
        reason = check_segment(self._ffprobe, path).discard_reason
        if reason is None:
            return False
        self._remove_discarded(path, reason)
        return True

    def _remove_discarded(self, path: Path, reason: str) -> None:
        remove_discarded(path, reason, self._log)
        self._hooks.segment_discarded(path, reason)

    def sample_resources(self) -> None:
        """Read FFmpeg's CPU time and memory and hand them to the owner (skipped when /proc says no)."""
        usage = process_usage(self.process.pid)
        if usage is None:
            return  # /proc is unreadable at times (EMFILE, the process just went): skip this sample
        self.cpu_seconds, rss = usage
        self._hooks.resources(self.cpu_seconds, rss)

    # -- once it is over --------------------------------------------------------------------------

    def finish(self) -> RunOutcome:
        """Reap FFmpeg, check what it left behind, and decide the restart reason."""
        self.sample_resources()  # a zombie still shows its CPU time until it is reaped
        returncode = reap(self.process, self._log)
        self._hooks.reaped()
        ran_for = self._monotonic() - self.monotonic_start
        stable = self.made_progress and ran_for >= self._settings.stable_after
        requested = self.kill_reason in REQUESTED_ENDS
        clean = returncode == 0 or (requested and returncode in (0, 255, -signal.SIGTERM))
        if not clean:
            self._check_unfinished()
        if requested:
            self._log.info("FFmpeg stopped cleanly" if clean else f"FFmpeg stopped (exit {returncode})")
            return RunOutcome(None, stable, returncode, ran_for, None)
        reason = self._restart_reason(returncode)
        tail = "\n    ".join(self.stderr)
        self._log.warning(
            "FFmpeg ended (exit %s, reason %s) after %.1f s%s",
            returncode,
            reason,
            ran_for,
            f"; last output:\n    {tail}" if tail else "",
        )
        last_error = self.stderr[-1] if self.stderr else f"exit status {returncode}"
        return RunOutcome(reason, stable, returncode, ran_for, last_error)

    def _restart_reason(self, returncode: int) -> str:
        if self.kill_reason is not None:
            return self.kill_reason  # stall or hotplug: the owner's or the watchdog's kill names the restart
        classified = ffmpeg_errors.classify(self.stderr)
        reason = ffmpeg_errors.restart_reason(classified, exit_code=returncode, signalled=returncode < 0)
        unexplained = classified is ffmpeg_errors.StderrReason.UNKNOWN
        if not self.made_progress and unexplained and reason in (RestartReason.EXITED, RestartReason.CRASHED):
            return RestartReason.CRASHED  # died before its first frame: a failed start, never "recording"
        return reason

    def _check_unfinished(self) -> None:
        """A segment cut off by a crash is kept if it holds a frame, else removed and counted."""
        progress = self.last_progress
        for cut in salvage_cut_segments(
            self._ffprobe,
            self.command.output_dir,
            self._camera_id,
            self.wall_start,
            self.completed_names,
            progress.out_time_seconds - self.last_segment_end if progress is not None else None,
            self.command.name_suffix,
        ):
            if cut.discard_reason is None:
                self._log.warning("kept segment %s cut off by FFmpeg's exit", cut.path.name)
                self._hooks.segment_done(cut.path, cut.duration)
            else:
                self._remove_discarded(cut.path, cut.discard_reason)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def process_usage(pid: int, proc: str = "/proc") -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of one process from a single read of /proc/PID/stat; None if unreadable.

    Read directly, not through psutil: this runs every few progress blocks of every camera, and psutil's
    oneshot reads two files and builds several objects for the two numbers wanted here.
    """
    try:
        fd = os.open(f"{proc}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) may hold spaces or parentheses: fields are counted after its last ')'.
    fields = data.rpartition(b")")[2].split()
    try:
        # utime and stime (fields 14 and 15) in clock ticks, rss (field 24) in pages.
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, int(fields[21]) * _PAGE_SIZE
    except (IndexError, ValueError):
        return None


def reap(process: FFmpegProcess, log: logging.LoggerAdapter[logging.Logger]) -> int:
    """Wait for an ending FFmpeg (SIGKILL after STALL_KILL_GRACE) and close its pipes; returns its exit status."""
    try:
        returncode = process.popen.wait(timeout=STALL_KILL_GRACE)
    except subprocess.TimeoutExpired:
        process.signal(signal.SIGKILL)
        try:
            returncode = process.popen.wait(timeout=UNKILLABLE_AFTER)
        except subprocess.TimeoutExpired:
            log.error("FFmpeg pid %d does not die (stuck in the kernel?); leaving it behind", process.pid)
            leave_to_reaper(process)
            returncode = -signal.SIGKILL
    process.close()
    return returncode


def abandon(process: FFmpegProcess) -> None:
    """After an exception mid-run: make sure FFmpeg is gone and reaped, whatever state it is in."""
    try:
        process.signal(signal.SIGKILL)
        process.popen.wait(timeout=UNKILLABLE_AFTER)
    except Exception:  # one we cannot reap is left to a reaper thread
        leave_to_reaper(process)
    finally:
        process.close()


def leave_to_reaper(process: FFmpegProcess) -> None:
    """A process that does not die in time is reaped by a thread of its own whenever it does."""
    threading.Thread(target=process.popen.wait, name=f"reap-{process.pid}", daemon=True).start()
