"""The job's children (the encode and every verification tool) at idle priority, each in its own process
group: stopped with SIGSTOP while the gate says wait, continued with SIGCONT, killed on interrupt or when
the window closes, so a transcode never competes with recording."""

from __future__ import annotations

import collections
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from recorder.ffmpeg.process import die_with_parent
from recorder.ffmpeg.progress import Progress, ProgressParser
from recorder.transcoding.gate import Gate, TranscodeState
from recorder.transcoding.verify import ToolInterrupted

# Split out of worker.py: its logger name stays, so operators' log filters keep working.
log = logging.getLogger("recorder.transcoding.worker")

# How often a running child is checked: for its end, an interrupt, and the gate's answer.
JOB_POLL = 1.0


def idle_priority_prefix() -> list[str]:
    """`nice -n 19 ionice -t -c 3`: both exec FFmpeg in place, so its pid (and process group) stay the job's.

    Set before FFmpeg starts, so every encoder thread it creates inherits the idle priorities (a nice value
    set afterwards on Linux reaches only the main thread).
    """
    nice, ionice = shutil.which("nice"), shutil.which("ionice")
    prefix = [nice, "-n", "19"] if nice else []
    # -t: run FFmpeg anyway where the I/O class cannot be set (a seccomp filter, a container).
    return prefix + ([ionice, "-t", "-c", "3"] if ionice else [])


class PausableRunner:
    """Runs one child at a time for the job in progress and tells `on_state` what the gate decided."""

    def __init__(self, gate: Gate, *, on_state: Callable[[TranscodeState], None], poll: float = JOB_POLL) -> None:
        self._gate = gate
        self._on_state = on_state
        self._poll = poll
        self._interrupted = threading.Event()
        # The child running now, None between children. Other threads only read it (one reference, replaced
        # whole), so it needs no lock.
        self.process: subprocess.Popen[bytes] | None = None
        # Seconds the current job's children spent stopped: not counted as time spent transcoding.
        self.paused_seconds = 0.0
        # Hears FFmpeg's -progress blocks of each encode (the --transcode CLI shows them); None: not asked.
        self.on_progress: Callable[[Progress], None] | None = None

    def new_job(self) -> None:
        self.paused_seconds = 0.0

    def interrupt(self) -> None:
        """Make the running child (and every later one) end within a poll; its caller sees an interruption."""
        self._interrupted.set()

    def encode(self, argv: Sequence[str], env: Mapping[str, str]) -> tuple[int | None, str]:
        """Run the encode. Returns (exit status, last error lines), or (None, "") when interrupted or the
        window closed."""
        tail: collections.deque[str] = collections.deque(maxlen=5)
        reader: list[threading.Thread] = []

        on_progress = self.on_progress

        def read_tail(proc: subprocess.Popen[bytes]) -> None:
            reader.append(threading.Thread(target=_keep_tail, args=(proc, tail), name="transcode-stderr", daemon=True))
            if on_progress is not None:
                reader.append(
                    threading.Thread(
                        target=_read_progress, args=(proc, on_progress), name="transcode-progress", daemon=True
                    )
                )
            for thread in reader:
                thread.start()

        stdout = subprocess.DEVNULL
        if on_progress is not None:
            argv = [argv[0], "-progress", "pipe:1", "-nostats", *argv[1:]]
            stdout = subprocess.PIPE
        rc = self._run(argv, env, stdout=stdout, stderr=subprocess.PIPE, started=read_tail)
        for thread in reader:
            thread.join(timeout=5)
        return (rc, " | ".join(tail)) if rc is not None else (None, "")

    def run_tool(self, argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
        """verify.ToolRunner for verification: every tool runs like the encode (idle priority, its own group,
        paused by the gate, killed on stop), so a full decode of a 1440p60 hour never competes with recording."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = self._run(argv, {}, stdout=out, stderr=err, timeout=timeout)
            if rc is None:
                raise ToolInterrupted(argv[0])
            out.seek(0)
            err.seek(0)
            return rc, out.read().decode(errors="replace"), err.read().decode(errors="replace")

    def _run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        stdout: int | IO[bytes],
        stderr: int | IO[bytes],
        started: Callable[[subprocess.Popen[bytes]], None] | None = None,
        timeout: float | None = None,
    ) -> int | None:
        """Run one tool at idle priority in its own process group, pausing it (SIGSTOP/SIGCONT to the group)
        while the gate says so. Returns its exit status, or None when interrupted or the window closed;
        subprocess.TimeoutExpired after `timeout` seconds of running (pauses not counted)."""
        proc = subprocess.Popen(
            [*idle_priority_prefix(), *argv],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own session and group: SIGSTOP/SIGCONT/SIGKILL reach all of it
            # Killed with the thread that started it (the daemon included, even by SIGKILL): a transcode never
            # outlives its worker. PR_SET_PDEATHSIG has no Popen argument, so this one prctl call stays a
            # preexec_fn; the session, which needs none, moved to start_new_session.
            preexec_fn=die_with_parent,
        )
        self.process = proc
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
                if self._interrupted.is_set():
                    return None
                if paused_since is None and timeout is not None and time.monotonic() - began > timeout:
                    raise subprocess.TimeoutExpired(list(argv), timeout)
                state = self._gate.decide()
                if state is TranscodeState.PAUSED_OUTSIDE_WINDOW:
                    log.info("transcoding: the window closed mid-segment; it is tried again in the next one")
                    return None
                self._on_state(state)
                if state is not TranscodeState.RUNNING and paused_since is None:
                    _signal_group(proc, signal.SIGSTOP)
                    paused_since = time.monotonic()
                elif state is TranscodeState.RUNNING and paused_since is not None:
                    _signal_group(proc, signal.SIGCONT)
                    paused = time.monotonic() - paused_since
                    self.paused_seconds += paused
                    began += paused
                    paused_since = None
        finally:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
                _signal_group(proc, signal.SIGCONT)  # a stopped process dies only once continued
                proc.wait()
            if paused_since is not None:
                self.paused_seconds += time.monotonic() - paused_since
            self.process = None


def _read_progress(proc: subprocess.Popen[bytes], on_progress: Callable[[Progress], None]) -> None:
    assert proc.stdout is not None
    parser = ProgressParser()
    for raw in proc.stdout:
        progress = parser.feed(raw.decode(errors="replace"))
        if progress is not None:
            on_progress(progress)


def _keep_tail(proc: subprocess.Popen[bytes], tail: collections.deque[str]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        tail.append(line.decode(errors="replace").strip())


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
