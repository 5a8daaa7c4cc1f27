"""Camera supervision states: their groupings, the transition table and the one change_state().

(The snapshot of one camera is re-exported from recorder.snapshots for older imports.)
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from tenacity import wait_exponential

from recorder.snapshots import RECENT_RESTARTS_KEPT, CameraSnapshot, Histogram, RestartEvent, recent_restarts
from recorder.vocabulary import CameraState

__all__ = [
    "GAP_STATES",
    "RECENT_RESTARTS_KEPT",
    "TRANSITIONS",
    "CameraSnapshot",
    "CameraState",
    "CameraStateMachine",
    "Histogram",
    "InvalidTransition",
    "RestartEvent",
    "recent_restarts",
]

# States in which the camera should be recording: time spent in them is a recording gap. So is time
# `stopped` by retention's stop_recording policy (the supervisor says so); a shutdown is not.
GAP_STATES = frozenset(
    {
        CameraState.STARTING,
        CameraState.BACKOFF,
        CameraState.STALLED,
        CameraState.WAITING_FOR_DEVICE,
        CameraState.FAILED,
        CameraState.STORAGE_ERROR,
    }
)

_RUNNING = frozenset({CameraState.STARTING, CameraState.RECORDING, CameraState.STALLED})
# Where a camera may go from each state. Everything may stop, back off, fail, lose its device or find its
# folder refusing writes; the edges that carry meaning are the ones into and out of an FFmpeg run:
# recording only follows a start (frames were written), a stall only interrupts a run, and a new start
# never follows a run without a backoff, a stop or a wait in between.
_ANYWHERE = frozenset(
    {
        CameraState.STOPPED,
        CameraState.BACKOFF,
        CameraState.FAILED,
        CameraState.WAITING_FOR_DEVICE,
        CameraState.STORAGE_ERROR,
    }
)
TRANSITIONS: dict[CameraState, frozenset[CameraState]] = {
    CameraState.STOPPED: _ANYWHERE | {CameraState.STARTING},
    CameraState.WAITING_FOR_DEVICE: _ANYWHERE | {CameraState.STARTING},
    CameraState.BACKOFF: _ANYWHERE | {CameraState.STARTING},
    CameraState.FAILED: _ANYWHERE | {CameraState.STARTING},
    CameraState.STORAGE_ERROR: _ANYWHERE | {CameraState.STARTING},
    CameraState.STARTING: _ANYWHERE | {CameraState.STARTING, CameraState.RECORDING, CameraState.STALLED},
    CameraState.RECORDING: _ANYWHERE | {CameraState.RECORDING, CameraState.STALLED},
    CameraState.STALLED: _ANYWHERE | {CameraState.STALLED},
}


class InvalidTransition(RuntimeError):
    """An edge the transition table does not have: a bug in the supervisor, never a camera's trouble."""


def wait_exponential_backoff(failures: int, initial: float, cap: float) -> float:
    """tenacity's exponential wait for the `failures`-th consecutive failure: initial * 2**(n-1), at most cap."""
    return float(wait_exponential(multiplier=initial, max=cap, exp_base=2)(_Attempt(max(1, failures))))


class _Attempt:
    """The one field of tenacity's RetryCallState that its wait strategies read."""

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


class CameraStateMachine:
    """One camera's state, the time spent in recording gaps, its restarts and consecutive failures.

    Only the supervisor thread calls it; `change_state` is the one way to move, guarded by TRANSITIONS.
    """

    def __init__(self, monotonic: Callable[[], float], state: CameraState = CameraState.STOPPED) -> None:
        self._monotonic = monotonic
        self.state = state
        self.since = monotonic()  # monotonic time the current state was entered
        self.gap = 0.0  # seconds of gap in states left before `since`
        self.counting_gap = False  # whether the current state counts as a recording gap
        self.restarts: collections.Counter[str] = collections.Counter()  # restart reason -> count
        self.failures = 0  # consecutive failed runs since the last stable one

    @property
    def running(self) -> bool:
        """An FFmpeg run is under way (starting, recording or stalled)."""
        return self.state in _RUNNING

    def change_state(self, new: CameraState, *, paused: bool = False, restart: str | None = None) -> CameraState:
        """Move to `new` and account the gap of the state left; returns the old state.

        `paused`: retention's stop_recording holds the camera, so a `stopped` entered now is a gap.
        `restart`: this edge is a restart for that reason (a failed supervision round backing off), counted
        with the move. A run that ends by itself is counted by `count_restart` when it is reaped: a stop,
        pause or unplug may follow it with no edge at all, and the count must not wait for one.
        """
        old = self.state
        if new not in TRANSITIONS[old]:
            raise InvalidTransition(f"{old.value} -> {new.value}")
        if restart is not None:
            self.count_restart(restart)
        now = self._monotonic()
        if self.counting_gap:
            self.gap += now - self.since
        self.state, self.since = new, now
        # Decided on entry: a pause lifted later must not un-count the time it stopped recording.
        self.counting_gap = new in GAP_STATES or (new is CameraState.STOPPED and paused)
        return old

    def gap_so_far(self, now: float) -> float:
        """Gap seconds of earlier states plus the current one's time so far when it counts."""
        return self.gap + (now - self.since if self.counting_gap else 0.0)

    def stalled_since(self, last_advance: float, now: float) -> None:
        """A recording run stalls: nothing was recorded since its last progress, not only since the stall was
        noticed, so that time joins the gap (a recording state does not count it)."""
        if self.state is CameraState.RECORDING and not self.counting_gap:
            self.gap += max(0.0, now - last_advance)

    def count_restart(self, reason: str) -> None:
        self.restarts[reason] += 1

    def next_backoff(self, initial: float, cap: float, *, stable: bool = False) -> float:
        """Count a failed run (none before it when it ran `stable`ly) and return the wait before the next."""
        if stable:
            self.failures = 0
        self.failures += 1
        return wait_exponential_backoff(self.failures, initial, cap)
