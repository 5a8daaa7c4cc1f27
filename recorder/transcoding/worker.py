"""The transcoding worker: a thread in the daemon (or one pass from the CLI) that re-encodes due segments
at idle priority, yields to the recorder, and replaces each segment only once its transcode is verified.

`Transcoder` ties the pieces together: the recordings' lock (`RecordingsLock`, here: one transcoder per
recordings folder, the daemon's worker or one `--transcode`), the counters the metrics read
(`counters`), the pausable idle-priority children (`pausable`), one segment's encode, verification and swap
(`job`); `TranscodeWorker` is the thread that runs it through the due list.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from recorder.config import Config
from recorder.domain.vocabulary import TranscodeState
from recorder.ffmpeg.progress import Progress
from recorder.footage.segments import parse_segment_name
from recorder.state.snapshots import TranscodeSnapshot
from recorder.transcoding.counters import TranscodeCounters
from recorder.transcoding.gate import Gate
from recorder.transcoding.job import ABORTED, OnReplaced, PendingSwaps, SegmentJob
from recorder.transcoding.ledger import Ledger, state_folder
from recorder.transcoding.pausable import JOB_POLL, PausableRunner
from recorder.transcoding.planner import Candidate, plan
from recorder.transcoding.swap import recover, temp_path, verified_path

log = logging.getLogger(__name__)

# How often a paused worker asks the gate again.
PAUSED_TICK = 15.0
# The due list is rebuilt from the disk at most this often (a walk of every camera folder).
REPLAN_EVERY = 600.0

LOCK_NAME = "lock"


class TranscoderBusy(RuntimeError):
    """Another transcoder (the daemon's, or another `--transcode`) holds the recordings' lock."""


class RecordingsLock:
    """An exclusive flock on `<base>/.transcoding/lock`; the kernel drops it with the process that held it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now or raise TranscoderBusy."""
        folder = state_folder(self.base)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TranscoderBusy(f"another transcoder works on {self.base} (the daemon's?)") from None
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Transcoder:
    """Transcodes single segments and keeps the counters; used by the worker thread and by `--transcode`."""

    def __init__(
        self,
        config: Config,
        *,
        ffmpeg: str,
        ffprobe: str,
        gate: Gate,
        clock: Callable[[], float] = time.time,
        active_paths: Callable[[], Collection[Path]] = lambda: (),
        on_replaced: OnReplaced | None = None,
        poll: float = JOB_POLL,
    ) -> None:
        self.config = config
        self.base = Path(os.path.abspath(config.recording.base_directory))
        self.cameras = tuple(c.id for c in config.cameras)
        self.gate = gate
        self._clock = clock
        self._active_paths = active_paths
        self.ledger = Ledger(self.base)
        self._recordings_lock = RecordingsLock(self.base)
        self._counters = TranscodeCounters(self.cameras, self.ledger.entries())
        self._runner = PausableRunner(gate, on_state=self._counters.set_state, poll=poll)
        self._keep_original = config.transcoding.keep_original_days > 0
        self._swaps = PendingSwaps(self.base, keep_original=self._keep_original)
        self._job = SegmentJob(
            config, ffmpeg=ffmpeg, ffprobe=ffprobe, runner=self._runner, ledger=self.ledger, swaps=self._swaps,
            clock=clock, on_replaced=on_replaced,
        )  # fmt: skip
        self._busy_lock = threading.Lock()
        self._busy: tuple[Path, ...] = ()  # the segment of the job running now and its temporary files

    # --- the recordings' lock: one transcoder per recordings folder

    def acquire(self) -> None:
        """Take the recordings' lock, or raise TranscoderBusy."""
        self._recordings_lock.acquire()

    def holds_lock(self) -> bool:
        return self._recordings_lock.held

    def release(self) -> None:
        self._recordings_lock.release()

    # --- reading

    def snapshot(self) -> TranscodeSnapshot:
        return self._counters.snapshot()

    def size_ratio(self) -> float | None:
        """Transcoded bytes over original bytes, over every segment the ledger knows; None before the first."""
        return self._counters.size_ratio()

    def set_state(self, state: TranscodeState) -> None:
        self._counters.set_state(state)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The child (FFmpeg or a verification tool) the job runs now; None between children."""
        return self._runner.process

    def busy_paths(self) -> list[Path]:
        """The source segment of the job running now and its temporary files: retention leaves them alone."""
        with self._busy_lock:
            return list(self._busy)

    # --- planning

    def recover(self) -> None:
        done = recover(
            self.base, self.cameras, keep_original=self._keep_original, ledger=self.ledger, now=self._clock()
        )
        self._counters.count_recovered(done.recorded)

    def retry_pending_swaps(self) -> None:
        """Complete the swaps that failed earlier; each is logged once when it fails, once done."""
        self._swaps.retry()

    def plan(self) -> list[Candidate]:
        due = plan(
            self.base,
            self.cameras,
            self.ledger,
            now=self._clock(),
            min_age_days=self.config.transcoding.min_age_days,
            active=self._active_paths(),
        )
        self.publish_backlog(due)
        return due

    def publish_backlog(self, due: Iterable[Candidate]) -> None:
        self._counters.publish_backlog(due)

    # --- one segment

    def listen_to_progress(self, on_progress: Callable[[Progress], None] | None) -> None:
        """Hear each encode's FFmpeg -progress blocks (the --transcode CLI shows them); None: stop."""
        self._runner.on_progress = on_progress

    def transcode_one(self, cand: Candidate) -> str:
        """Transcode, verify and swap one segment; returns its result (TranscodeResult) or ABORTED."""
        started = time.monotonic()
        self._runner.new_job()
        temp = temp_path(cand.path)
        with self._busy_lock:
            self._busy = (cand.path, temp, verified_path(cand.path))
        try:
            outcome = self._job.run(cand, temp)
        finally:
            with self._busy_lock:
                self._busy = ()
        if outcome.result != ABORTED:
            spent = time.monotonic() - started - self._runner.paused_seconds
            self._counters.count_job(
                cand, outcome.result, spent=spent, output_bytes=outcome.output_bytes, at=outcome.at
            )
        return outcome.result

    def interrupt(self) -> None:
        """Ask the running job (if any) to end now; its temporary file is removed."""
        self._runner.interrupt()


# A recovery that failed (a folder not readable yet, a disk error) is tried again this often.
RECOVERY_RETRY_SECONDS = 60.0


class TranscodeWorker:
    """The daemon's transcoding thread: waits for the gate, then works through the due list oldest first."""

    def __init__(self, transcoder: Transcoder, *, paused_tick: float = PAUSED_TICK) -> None:
        self.transcoder = transcoder
        self._paused_tick = paused_tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._due: list[Candidate] = []
        self._planned_at: float | None = None  # monotonic time of the last plan; None before the first

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread. While another transcoder holds the recordings' lock (a previous worker still
        ending its job: its lock goes only with its thread; or a `--transcode` pass), the thread waits for
        the lock before it touches any file."""
        try:
            self.transcoder.acquire()
        except TranscoderBusy as exc:
            log.warning("transcoding: %s; starting once it is done", exc)
        self._thread = threading.Thread(target=self._run_then_release, name="transcoding", daemon=True)
        self._thread.start()

    def busy_paths(self) -> list[Path]:
        """The segment being transcoded and its temporary files: never retention's to delete mid-job."""
        return self.transcoder.busy_paths()

    def request_stop(self) -> None:
        """Ask the thread to end (its FFmpeg is killed within a poll); stop() waits for it."""
        self._stop.set()
        self.transcoder.interrupt()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and wait up to `timeout`. The recordings' lock is released by the thread as it ends, never
        before: a thread still finishing a job keeps a new worker (and `--transcode`) off its segment."""
        self.request_stop()
        if self._thread is None:
            self.transcoder.release()
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("transcoding: the worker is still ending its job; the next one starts after it")

    def _run_then_release(self) -> None:
        try:
            while not self.transcoder.holds_lock():
                if self._stop.wait(self._paused_tick):
                    return
                with contextlib.suppress(TranscoderBusy):
                    self.transcoder.acquire()
            self._run()
        finally:
            self.transcoder.release()

    def snapshot(self) -> TranscodeSnapshot:
        return self.transcoder.snapshot()

    def _run(self) -> None:
        failures = 0
        while not self._start_up(first_failure=failures == 0):
            failures += 1
            # The thread stays: a dead one would read as a wedged daemon to the liveness check (and systemd).
            if self._stop.wait(RECOVERY_RETRY_SECONDS):
                return
        if failures:
            log.info("transcoding: recovery succeeded after %d failed attempts", failures)
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                # The worker never takes the daemon down; it tries again after a pause.
                log.exception("transcoding: unexpected error")
                self._stop.wait(self._paused_tick)

    def _start_up(self, *, first_failure: bool) -> bool:
        """Recover what a crash left, plan, compact the ledger; False (logged) when that fails."""
        t = self.transcoder
        try:
            t.recover()
            due = t.plan()
            t.ledger.compact(
                (c, p.name) for c in t.cameras for p in _segment_files(t.base / c) if parse_segment_name(p.name)
            )
        except Exception as exc:
            if first_failure:
                log.exception("transcoding: recovery at start failed; no transcoding until it succeeds")
            else:
                log.debug("transcoding: recovery failed again: %s", exc)
            return False
        self._due, self._planned_at = due, time.monotonic()
        return True

    def _step(self) -> None:
        t = self.transcoder
        t.retry_pending_swaps()
        state = t.gate.decide()
        if state is not TranscodeState.RUNNING:
            t.set_state(state)
            self._stop.wait(self._paused_tick)
            return
        if not self._due or self._planned_at is None or time.monotonic() - self._planned_at > REPLAN_EVERY:
            self._due, self._planned_at = t.plan(), time.monotonic()
        while self._due and (
            t.ledger.finished(self._due[0].camera, self._due[0].name) or not self._due[0].path.exists()
        ):
            self._due.pop(0)
        if not self._due:
            t.set_state(TranscodeState.RUNNING)
            self._stop.wait(self._paused_tick)
            return
        cand = self._due[0]
        if not t.gate.room_for(cand.size):
            t.set_state(TranscodeState.PAUSED_LOW_SPACE)
            self._stop.wait(self._paused_tick)
            return
        t.set_state(TranscodeState.RUNNING)
        if t.transcode_one(cand) != ABORTED:
            self._due.pop(0)


def _segment_files(folder: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder) if e.is_file(follow_symlinks=False)]
    except OSError:
        return []
