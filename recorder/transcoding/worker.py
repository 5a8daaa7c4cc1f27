"""The transcoding worker: a thread in the daemon (or one pass from the CLI) that re-encodes due segments
at idle priority, yields to the recorder, and replaces each segment only once its transcode is verified."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import IO

from recorder.config import Config, Container
from recorder.ffmpeg_process import die_with_parent
from recorder.presets import build_transcode_command
from recorder.segments import parse_segment_name
from recorder.snapshots import TranscodeSnapshot
from recorder.transcoding.gate import Gate, TranscodeState
from recorder.transcoding.ledger import Ledger, LedgerEntry, state_folder
from recorder.transcoding.planner import Candidate, plan
from recorder.transcoding.swap import (
    OriginalVanished,
    complete_swap,
    fsync_file,
    mark_verified,
    recover,
    temp_path,
    verified_path,
)
from recorder.transcoding.verify import ToolInterrupted, probe, verify
from recorder.vocabulary import TranscodeResult, values

log = logging.getLogger(__name__)

# How often a paused worker asks the gate again, and how often a running FFmpeg is checked.
PAUSED_TICK = 15.0
JOB_POLL = 1.0
# The due list is rebuilt from the disk at most this often (a walk of every camera folder).
REPLAN_EVERY = 600.0
LOCK_NAME = "lock"
# Outcomes that are not results: the job was interrupted (stop, window closed) or its segment vanished.
ABORTED = "aborted"


class TranscoderBusy(RuntimeError):
    """Another transcoder (the daemon's, or another `--transcode`) holds the recordings' lock."""


def idle_priority_prefix() -> list[str]:
    """`nice -n 19 ionice -t -c 3`: both exec FFmpeg in place, so its pid (and process group) stay the job's.

    Set before FFmpeg starts, so every encoder thread it creates inherits the idle priorities (a nice value
    set afterwards on Linux reaches only the main thread).
    """
    nice, ionice = shutil.which("nice"), shutil.which("ionice")
    prefix = [nice, "-n", "19"] if nice else []
    # -t: run FFmpeg anyway where the I/O class cannot be set (a seccomp filter, a container).
    return prefix + ([ionice, "-t", "-c", "3"] if ionice else [])


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
        on_replaced: Callable[[str, Path, float, float, int], None] | None = None,
        poll: float = JOB_POLL,
    ) -> None:
        self.config = config
        self.base = Path(os.path.abspath(config.recording.base_directory))
        self.cameras = tuple(c.id for c in config.cameras)
        self._ffmpeg = ffmpeg
        self._ffprobe = ffprobe
        self.gate = gate
        self._clock = clock
        self._active_paths = active_paths
        # Told (camera, path, start, duration, new size) after a swap, so retention accounts the new size.
        self._on_replaced = on_replaced
        self._poll = poll
        self.ledger = Ledger(self.base)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the counters and the current process
        self._process: subprocess.Popen[bytes] | None = None  # the FFmpeg running now; None between jobs
        self._busy: tuple[Path, ...] = ()  # the segment of the job running now and its temporary files
        self._paused_for = [0.0]  # seconds the job running now spent paused (its encode and its verification)
        # Verified replacements whose swap failed (ENOSPC making .originals, EIO): retried before each job.
        # The ledger says "transcoded" and the original still holds the name, so nothing is lost meanwhile.
        # segment -> (camera, what to do once swapped: tell retention the new size)
        self._pending_swaps: dict[Path, tuple[str, Callable[[], None]]] = {}
        self._state = TranscodeState.RUNNING
        self._segments = {(c, r): 0 for c in self.cameras for r in values(TranscodeResult)}
        self._in = dict.fromkeys(self.cameras, 0)
        self._out = dict.fromkeys(self.cameras, 0)
        self._seconds = dict.fromkeys(self.cameras, 0.0)
        self._backlog: dict[str, tuple[int, int]] = {}
        self._last_success: dict[str, float] = {}
        # Bytes before and after over every segment the ledger says was transcoded: the measured ratio.
        self._ratio_in = self._ratio_out = 0
        for e in self.ledger.entries():
            if e.result != "transcoded":
                continue
            self._ratio_in += e.input_bytes
            self._ratio_out += e.output_bytes
            if e.camera in self._in:
                self._last_success[e.camera] = max(self._last_success.get(e.camera, 0.0), e.at)
        self._lock_fd: int | None = None

    # --- the recordings' lock: one transcoder per recordings folder

    def acquire(self) -> None:
        folder = state_folder(self.base)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TranscoderBusy(f"another transcoder works on {self.base} (the daemon's?)") from None
        self._lock_fd = fd

    def holds_lock(self) -> bool:
        return self._lock_fd is not None

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- reading

    def snapshot(self) -> TranscodeSnapshot:
        with self._lock:
            return TranscodeSnapshot(
                state=self._state,
                cameras=self.cameras,
                segments=MappingProxyType(dict(self._segments)),
                input_bytes=MappingProxyType(dict(self._in)),
                output_bytes=MappingProxyType(dict(self._out)),
                seconds=MappingProxyType(dict(self._seconds)),
                backlog_segments=MappingProxyType({c: n for c, (n, _) in self._backlog.items()}),
                backlog_bytes=MappingProxyType({c: b for c, (_, b) in self._backlog.items()}),
                last_success=MappingProxyType(dict(self._last_success)),
            )

    def size_ratio(self) -> float | None:
        """Transcoded bytes over original bytes, over every segment the ledger knows; None before the first."""
        with self._lock:
            return self._ratio_out / self._ratio_in if self._ratio_in else None

    def set_state(self, state: TranscodeState) -> None:
        with self._lock:
            changed = state is not self._state
            self._state = state
        if changed:
            log.info("transcoding: %s", state.value.replace("_", " "))

    # --- planning

    def recover(self) -> None:
        done = recover(
            self.base,
            self.cameras,
            keep_original=self.config.transcoding.keep_original_days > 0,
            ledger=self.ledger,
            now=self._clock(),
        )
        with self._lock:
            for e in done.recorded:
                self._ratio_in += e.input_bytes
                self._ratio_out += e.output_bytes

    def busy_paths(self) -> list[Path]:
        """The source segment of the job running now and its temporary files: retention leaves them alone."""
        with self._lock:
            return list(self._busy)

    def retry_pending_swaps(self) -> None:
        """Complete the swaps that failed earlier (see _swap); each is logged once when it fails, once done."""
        for segment, (camera, swapped) in list(self._pending_swaps.items()):
            try:
                complete_swap(self.base, segment, keep_original=self.config.transcoding.keep_original_days > 0)
            except OriginalVanished as exc:
                log.info("transcoding: %s", exc)
            except FileNotFoundError:
                pass  # nothing verified left (removed by hand): the name holds what it holds
            except OSError:
                continue  # still failing: already logged, tried again before the next job
            else:
                log.info("transcoding: completed the delayed swap of %s/%s", camera, segment.name)
                swapped()
            del self._pending_swaps[segment]

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
        backlog = {c: [0, 0] for c in self.cameras}
        for cand in due:
            backlog[cand.camera][0] += 1
            backlog[cand.camera][1] += cand.size
        with self._lock:
            self._backlog = {c: (n, b) for c, (n, b) in backlog.items()}

    # --- one segment

    def transcode_one(self, cand: Candidate) -> str:
        """Transcode, verify and swap one segment; returns its result (TranscodeResult) or ABORTED."""
        started = time.monotonic()
        paused_for = self._paused_for = [0.0]
        try:
            result = self._transcode(cand, paused_for)
        finally:
            with self._lock:
                self._busy = ()
        spent = time.monotonic() - started - paused_for[0]
        if result != ABORTED:
            with self._lock:
                self._segments[(cand.camera, result)] += 1
                self._seconds[cand.camera] += spent
                n, b = self._backlog.get(cand.camera, (1, cand.size))
                self._backlog[cand.camera] = (max(n - 1, 0), max(b - cand.size, 0))
        return result

    def _transcode(self, cand: Candidate, paused_for: list[float]) -> str:
        tc = self.config.transcoding
        segment = cand.path
        temp = temp_path(segment)
        with self._lock:
            self._busy = (segment, temp, verified_path(segment))
        container = Container(segment.suffix.lstrip("."))
        try:
            original = probe(self._ffprobe, segment, self._run_tool)
        except ToolInterrupted:
            return ABORTED
        if original is None:
            if not segment.exists():
                return ABORTED  # retention deleted it meanwhile
            return self._fail(cand, "failed", "the original cannot be probed")
        argv, env = build_transcode_command(self.config, segment, temp, container, self._ffmpeg)
        rc, errors = self._run_ffmpeg(argv, env, paused_for)
        if rc is None:
            _unlink_quietly(temp)
            return ABORTED
        if rc != 0:
            _unlink_quietly(temp)
            return self._fail(cand, "failed", f"FFmpeg exited with status {rc}: {errors}")
        fsync_file(temp)
        size = temp.stat().st_size
        savings = 100.0 * (1 - size / cand.size) if cand.size else 0.0
        if savings < tc.min_savings_percent:
            _unlink_quietly(temp)
            self.ledger.record(
                LedgerEntry(cand.camera, cand.name, "skipped_small_savings", cand.size, size, self._clock())
            )
            log.info(
                "transcoding: %s/%s kept as recorded: %.1f%% smaller, below min_savings_percent %g",
                cand.camera, cand.name, savings, tc.min_savings_percent,
            )  # fmt: skip
            return "skipped_small_savings"
        try:
            verdict = verify(
                self._ffmpeg, self._ffprobe, segment, temp, container=container.value,
                check_quality=tc.verify_quality, original_facts=original, run=self._run_tool,
            )  # fmt: skip
        except ToolInterrupted:
            _unlink_quietly(temp)
            return ABORTED
        if not verdict.ok:
            _unlink_quietly(temp)
            return self._fail(cand, "failed_verification", verdict.reason)
        if not segment.exists():
            _unlink_quietly(temp)
            return ABORTED
        verified = mark_verified(temp, segment)
        now = self._clock()
        # Recorded before the original moves: from here on recovery finishes the swap, never undoes it (and
        # writes this line itself if a crash comes first).
        try:
            self.ledger.record(LedgerEntry(cand.camera, cand.name, "transcoded", cand.size, size, now))
        except OSError as exc:
            # Without its ledger line the replacement must not go in: the original stays, tried again later.
            _unlink_quietly(verified)
            log.error("transcoding: %s/%s not swapped, the ledger cannot be written: %s", cand.camera, cand.name, exc)
            return ABORTED
        on_replaced = self._on_replaced

        def swapped() -> None:
            if on_replaced is not None:
                on_replaced(cand.camera, segment, cand.start, original.duration, size)

        if not self._swap(cand, segment, swapped):
            return ABORTED
        with self._lock:
            self._in[cand.camera] += cand.size
            self._out[cand.camera] += size
            self._last_success[cand.camera] = now
            self._ratio_in += cand.size
            self._ratio_out += size
        log.info(
            "transcoding: %s/%s %s -> %s (%.1f%% smaller%s)", cand.camera, cand.name, cand.size, size, savings,
            f", SSIM {verdict.ssim:.4f}" if verdict.ssim is not None else "",
        )  # fmt: skip
        return "transcoded"

    def _swap(self, cand: Candidate, segment: Path, swapped: Callable[[], None]) -> bool:
        """Steps 3-4 of the swap, then `swapped()`; False when the segment was deleted meanwhile.

        A failing swap (no room for .originals, an I/O error) keeps `.verified` and the original, and is
        retried before every next job (and by recovery at the next start); it counts as transcoded, as the
        ledger already says.
        """
        try:
            complete_swap(self.base, segment, keep_original=self.config.transcoding.keep_original_days > 0)
        except OriginalVanished as exc:
            log.info("transcoding: %s", exc)
            return False
        except OSError as exc:
            log.error("transcoding: %s/%s verified, but its swap failed (retried): %s", cand.camera, cand.name, exc)
            self._pending_swaps[segment] = (cand.camera, swapped)
            return True
        swapped()
        return True

    def _fail(self, cand: Candidate, result: str, why: str) -> str:
        log.warning("transcoding: %s/%s %s: %s", cand.camera, cand.name, result.replace("_", " "), why)
        self.ledger.record(LedgerEntry(cand.camera, cand.name, result, cand.size, 0, self._clock()))
        return result

    def _run_ffmpeg(
        self, argv: tuple[str, ...], env: Mapping[str, str], paused_for: list[float]
    ) -> tuple[int | None, str]:
        """Run the encode. Returns (exit status, last error lines), or (None, "") when interrupted by stop()
        or the window's end."""
        tail: collections.deque[str] = collections.deque(maxlen=5)
        reader: list[threading.Thread] = []

        def read_tail(proc: subprocess.Popen[bytes]) -> None:
            reader.append(threading.Thread(target=_keep_tail, args=(proc, tail), name="transcode-stderr", daemon=True))
            reader[0].start()

        rc = self._run_supervised(
            argv, env, paused_for, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, started=read_tail
        )
        if reader:
            reader[0].join(timeout=5)
        return (rc, " | ".join(tail)) if rc is not None else (None, "")

    def _run_tool(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        """verify.ToolRunner for verification: every tool runs like the encode (idle priority, its own group,
        paused by the gate, killed on stop), so a full decode of a 1440p60 hour never competes with recording."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = self._run_supervised(argv, {}, self._paused_for, stdout=out, stderr=err, timeout=timeout)
            if rc is None:
                raise ToolInterrupted(argv[0])
            out.seek(0)
            err.seek(0)
            return rc, out.read().decode(errors="replace"), err.read().decode(errors="replace")

    def _run_supervised(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        paused_for: list[float],
        *,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        started: Callable[[subprocess.Popen[bytes]], None] | None = None,
        timeout: float | None = None,
    ) -> int | None:
        """Run one tool at idle priority in its own process group, pausing it (SIGSTOP/SIGCONT to the group)
        while the gate says so. Returns its exit status, or None when interrupted by stop() or the window's
        end; subprocess.TimeoutExpired after `timeout` seconds of running (pauses not counted)."""
        proc = subprocess.Popen(
            [*idle_priority_prefix(), *argv],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=_in_child,
        )
        with self._lock:
            self._process = proc
        if started is not None:
            started(proc)
        paused_since: float | None = None
        began = time.monotonic()
        try:
            while True:
                try:
                    return proc.wait(timeout=self._poll)
                except subprocess.TimeoutExpired:
                    pass
                if self._stop.is_set():
                    return None
                if paused_since is None and timeout is not None and time.monotonic() - began > timeout:
                    raise subprocess.TimeoutExpired(list(argv), timeout)
                state = self.gate.decide()
                if state is TranscodeState.PAUSED_OUTSIDE_WINDOW:
                    log.info("transcoding: the window closed mid-segment; it is tried again in the next one")
                    return None
                self.set_state(state)
                if state is not TranscodeState.RUNNING and paused_since is None:
                    _signal_group(proc, signal.SIGSTOP)
                    paused_since = time.monotonic()
                elif state is TranscodeState.RUNNING and paused_since is not None:
                    _signal_group(proc, signal.SIGCONT)
                    paused = time.monotonic() - paused_since
                    paused_for[0] += paused
                    began += paused
                    paused_since = None
        finally:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
                _signal_group(proc, signal.SIGCONT)  # a stopped process dies only once continued
                proc.wait()
            if paused_since is not None:
                paused_for[0] += time.monotonic() - paused_since
            with self._lock:
                self._process = None

    def interrupt(self) -> None:
        """Ask the running job (if any) to end now; its temporary file is removed."""
        self._stop.set()


def _in_child() -> None:
    # Its own session and group: SIGSTOP/SIGCONT/SIGKILL reach every process of it. Killed with the thread
    # that started it (the daemon included, even by SIGKILL): a transcode never outlives its worker.
    os.setsid()
    die_with_parent()


def _keep_tail(proc: subprocess.Popen[bytes], tail: collections.deque[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        tail.append(line.decode(errors="replace").strip())


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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
