"""Camera supervision states: their groupings, the transition table and the one change_state()."""

from __future__ import annotations

import collections
from collections.abc import Callable

from tenacity import RetryCallState, wait_exponential, wait_fixed, wait_random_exponential
from tenacity.wait import wait_base

from recorder.domain.vocabulary import CameraState, RestartReason
from recorder.state.snapshots import CameraSnapshot

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

# An FFmpeg run is under way in these.
RUNNING_STATES = frozenset({CameraState.STARTING, CameraState.RECORDING, CameraState.STALLED})
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


# Out of descriptors, memory or processes: the resource comes back by itself, so retrying is cheap and
# the wait is capped lower than backoff_max.
RESOURCE_RETRY_MAX = 5.0
# States that wait before the next start; entering one for a restart chooses how long.
WAITING_TO_RESTART = frozenset({CameraState.BACKOFF, CameraState.FAILED})


# The share of each escalating wait that is random: cameras that failed together (one USB hub) restart
# spread over that share of their wait instead of in lockstep, and the jitter grows with the wait.
BACKOFF_JITTER_SHARE = 0.5


def _attempt(number: int) -> RetryCallState:
    """tenacity's own retry state at its `number`-th attempt (what its wait strategies read)."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(1, number)
    return state


def jittered_backoff(initial: float, cap: float, share: float = BACKOFF_JITTER_SHARE) -> wait_base:
    """tenacity's exponential wait plus its random exponential one ("equal jitter"), never above `cap`.

    For d = initial * 2**(n-1), the n-th wait lies in [d, d * (1 + share)] while d stays below
    cap * (1 - share), and in [cap * (1 - share), cap] once d reaches the cap (jittered_backoff_bounds): the
    first wait is still at least backoff_initial (when backoff_max is at least twice as long), no wait is
    longer than backoff_max, and even cameras that keep failing at the cap spread out.
    """
    fixed_part = wait_exponential(multiplier=initial, max=cap * (1 - share), exp_base=2)
    random_part = wait_random_exponential(multiplier=initial * share, max=cap * share, exp_base=2)
    return fixed_part + random_part


def jittered_backoff_bounds(
    failures: int, initial: float, cap: float, share: float = BACKOFF_JITTER_SHARE
) -> tuple[float, float]:
    """The shortest and longest wait jittered_backoff may choose for the `failures`-th consecutive failure."""
    growth = 2.0 ** (max(1, failures) - 1)
    low = min(initial * growth, cap * (1 - share))
    return low, low + min(initial * share * growth, cap * share)


def wait_exponential_backoff(failures: int, initial: float, cap: float) -> float:
    """tenacity's exponential wait for the `failures`-th consecutive failure: initial * 2**(n-1), at most cap.

    Without jitter: the lower edge of what jittered_backoff waits below the cap.
    """
    return float(wait_exponential(multiplier=initial, max=cap, exp_base=2)(_attempt(failures)))


def state_after_end(reason: str, *, retry: bool, stopping: bool, paused: bool) -> CameraState:
    """Where a camera goes once a run ended for `reason` (or could not start).

    `retry`: nothing holds the camera (no stop, no pause, the source is there), so another start follows after
    a wait, a slow one in `failed` when the configuration cannot work. Otherwise the camera goes where it is
    held: stopped (shutdown, retention's pause) or waiting for its device.
    """
    if retry:
        return CameraState.FAILED if reason == RestartReason.CONFIG else CameraState.BACKOFF
    return CameraState.STOPPED if stopping or paused else CameraState.WAITING_FOR_DEVICE


class CameraStateMachine:
    """One camera's state, the time spent in recording gaps, its restarts and consecutive failures.

    Only the supervisor thread calls it; `change_state` is the one way to move, guarded by TRANSITIONS, and
    the one place restarts are counted, gap time accounted and the wait before the next start chosen.
    """

    def __init__(
        self,
        monotonic: Callable[[], float],
        state: CameraState = CameraState.STOPPED,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        carried: CameraSnapshot | None = None,
    ) -> None:
        """`carried`: the camera's earlier supervisor's last snapshot (camera/ledger.py): its restarts and gap go on
        from here, the gap still growing when the handover itself is one (a reload restarting the camera)."""
        self._monotonic = monotonic
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._escalating = jittered_backoff(backoff_initial, backoff_max)
        self._resource_escalating = jittered_backoff(backoff_initial, min(backoff_max, RESOURCE_RETRY_MAX))
        self.state = state
        self.since = monotonic()  # monotonic time the current state was entered
        # Read at `since` itself: the gap a scrape extrapolates from the old snapshot goes on without a dip.
        self.gap = carried.gap_seconds_at(self.since) if carried is not None else 0.0  # states left before `since`
        self.counting_gap = carried is not None and carried.gap_growing  # the current state counts as a gap
        self.restarts: collections.Counter[str] = collections.Counter(carried.restarts if carried else {})  # by reason
        self.failures = 0  # consecutive failed runs since the last stable one
        self.restart_in = 0.0  # seconds the current backoff (or failed) state waits before the next start

    @property
    def running(self) -> bool:
        """An FFmpeg run is under way (starting, recording or stalled)."""
        return self.state in RUNNING_STATES

    def change_state(
        self,
        new: CameraState,
        *,
        paused: bool = False,
        restart: str | None = None,
        stable: bool = False,
        escalate: bool = True,
        frames_until: float | None = None,
    ) -> CameraState:
        """Move to `new`, accounting the gap of the state left; returns the old state.

        `paused`: retention's stop_recording holds the camera, so a `stopped` entered now is a gap.
        `restart`: this edge ends a run (or a start, or a supervision round) for that reason: counted with
        the move, whichever state follows (a backoff, or a stop, pause or unplug that holds the camera).
        Entering backoff or failed for a restart chooses `restart_in` with tenacity's wait strategies:
        exponential in the consecutive failures (none before a `stable` run) with jitter (jittered_backoff),
        capped by backoff_max (by RESOURCE_RETRY_MAX when a resource ran out); the cap at once for a
        configuration that cannot work; backoff_initial, counting no failure, when the cause was dealt with
        (`escalate` False).
        `frames_until`: for a stall, the monotonic time frames last advanced: nothing was recorded since.
        """
        old = self.state
        if new not in TRANSITIONS[old]:
            raise InvalidTransition(f"{old.value} -> {new.value}")
        now = self._monotonic()
        if restart is not None:
            self.restarts[restart] += 1
            if new in WAITING_TO_RESTART:
                self.restart_in = self._wait_before_restart(restart, stable=stable, escalate=escalate)
        if frames_until is not None and not self.counting_gap:
            self.gap += max(0.0, now - frames_until)  # a recording state did not count it as a gap
        if self.counting_gap:
            self.gap += now - self.since
        self.state, self.since = new, now
        # Decided on entry: a pause lifted later must not un-count the time it stopped recording.
        self.counting_gap = new in GAP_STATES or (new is CameraState.STOPPED and paused)
        return old

    def forget_failures(self) -> None:
        """The camera came back (plugged in again): the next failure starts a fresh backoff sequence."""
        self.failures = 0

    def gap_so_far(self, now: float) -> float:
        """Gap seconds of earlier states plus the current one's time so far when it counts."""
        return self.gap + (now - self.since if self.counting_gap else 0.0)

    def _wait_before_restart(self, reason: str, *, stable: bool, escalate: bool) -> float:
        if stable:
            self.failures = 0
        if not escalate:
            # Retention freed space, or the folder is probed before the next start: no failure to count.
            return float(wait_fixed(self._backoff_initial)(_attempt(1)))
        self.failures += 1
        if reason == RestartReason.CONFIG:
            # A bad option or a permission problem will not fix itself within seconds.
            return float(wait_fixed(self._backoff_max)(_attempt(self.failures)))
        wait = self._resource_escalating if reason == RestartReason.RESOURCE_EXHAUSTED else self._escalating
        return float(wait(_attempt(self.failures)))
