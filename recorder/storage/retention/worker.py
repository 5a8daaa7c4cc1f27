"""The one thread that does the storage's slow work: the periodic steps and the passes others ask for.

A single-thread executor runs every job in order, so a pass asked for by the webhook never overlaps a
periodic one; a timer thread submits the periodic step whenever it is due, and wakes early when told.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Protocol, TypeVar

log = logging.getLogger("recorder.storage")

T = TypeVar("T")
# A pressure pass that could delete nothing is repeated after this long, not at the fill rate's pace.
STUCK_PRESSURE_RECHECK = 1.0


class RetentionWorker:
    """Runs `step` (which returns the seconds until it is due again) and submitted jobs, one at a time."""

    def __init__(self, step: Callable[[], float], name: str = "storage") -> None:
        self._step = step
        self._name = name
        self._wake = threading.Event()  # set by stop() and wake() to cut the timer's wait short
        self._stopping = False
        self._timer: threading.Thread | None = None  # None while stopped
        self._executor: ThreadPoolExecutor | None = None  # None while stopped
        self._on_worker = threading.local()  # `.active` is True in the executor's thread

    @property
    def alive(self) -> bool:
        """True while started and not stopped (the daemon's watchdog reads it)."""
        timer = self._timer
        return timer is not None and timer.is_alive()

    def start(self) -> None:
        if self.alive:
            return
        self._stopping = False
        self._wake.clear()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self._name}-work")
        self._timer = threading.Thread(target=self._tick_forever, name=self._name, daemon=True)
        self._timer.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop at once: jobs not begun are cancelled, the one running finishes (waited for up to `timeout`)."""
        self._stopping = True
        self._wake.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._timer is not None:
            self._timer.join(timeout)
        self._timer = None
        self._executor = None

    def wake(self) -> None:
        """Run the periodic step now rather than when it said it is next due."""
        self._wake.set()

    def runs_inline(self) -> bool:
        """True when a job asked for now must run in the calling thread: not started, stopping, or asked from
        within a job (which would otherwise wait on itself)."""
        return not self.alive or self._stopping or getattr(self._on_worker, "active", False)

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Queue a job behind the one running; RuntimeError when stopped."""
        executor = self._executor
        if executor is None:
            raise RuntimeError("storage stopped")
        return executor.submit(self._as_worker, job)

    @staticmethod
    def result(future: Future[T], timeout: float) -> T:
        """A submitted job's result; TimeoutError while it still runs, RuntimeError when stopping cancelled it."""
        try:
            return future.result(timeout)
        except CancelledError:
            raise RuntimeError("storage stopped") from None
        except FutureTimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            raise TimeoutError from None

    def _as_worker(self, job: Callable[[], T]) -> T:
        self._on_worker.active = True
        return job()

    def _tick_forever(self) -> None:
        while not self._stopping:
            try:
                delay = self.submit(self._step).result()
            except (CancelledError, RuntimeError):
                return  # stopped: the step was cancelled before it began, or could not be queued
            except Exception:  # the thread must outlive one bad step; the next one retries
                log.exception("storage step failed")
                delay = 1.0
            if self._stopping:
                return
            self._wake.wait(max(0.0, delay))
            self._wake.clear()


class PeriodicWork(Protocol):
    """The steps the worker runs on a schedule (the Storage facade)."""

    @property
    def scanned(self) -> bool: ...

    def scan(self) -> None: ...
    def resync(self) -> None: ...
    def check(self) -> None: ...
    def pressure_check(self) -> bool: ...
    def next_pressure_delay(self) -> float: ...


class PeriodicSteps:
    """When the storage's periodic steps are due: check every check_interval, resync every resync_interval,
    and the cheap pressure check at the pace the fill rate asks (or at once when a segment says so)."""

    def __init__(
        self, work: PeriodicWork, check_interval: float, resync_interval: float, monotonic: Callable[[], float]
    ) -> None:
        self._work = work
        self._check_interval = check_interval
        self._resync_interval = resync_interval
        self._monotonic = monotonic
        self.pressure_due = False  # a segment completed with the disk under pressure: check at once
        self._next_check = self._next_pressure = self._next_resync = 0.0  # monotonic times

    def restart(self) -> None:
        """Everything but the resync is due now (called when the worker starts)."""
        now = self._monotonic()
        self._next_check = self._next_pressure = now
        self._next_resync = now + self._resync_interval

    def run_due(self) -> float:
        """Run the steps that are due; return the seconds until the next one is."""
        work = self._work
        if not work.scanned:
            _guarded(work.scan)
        now = self._monotonic()
        if now >= self._next_resync:
            _guarded(work.resync)
            self._next_resync = now + self._resync_interval
        if now >= self._next_check:
            self.pressure_due = False
            _guarded(work.check)
            self._next_check = now + self._check_interval
            self._next_pressure = self._monotonic() + work.next_pressure_delay()
        elif self.pressure_due or now >= self._next_pressure:
            self.pressure_due = False
            progressed = True
            try:
                progressed = work.pressure_check()
            except Exception:  # the worker must outlive one bad step; the next one retries
                log.exception("storage pressure_check failed")
            delay = work.next_pressure_delay()
            if not progressed:
                delay = max(delay, STUCK_PRESSURE_RECHECK)
            self._next_pressure = self._monotonic() + delay
        return max(0.0, min(self._next_check, self._next_resync, self._next_pressure) - self._monotonic())


def _guarded(step: Callable[[], None]) -> None:
    try:
        step()
    except Exception:  # the worker must outlive one bad step; the next one retries
        log.exception("storage %s failed", step.__name__)
