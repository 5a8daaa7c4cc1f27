"""The camera state machine (recorder.camera.states): one test per edge, a fake clock, no FFmpeg and no thread."""

from __future__ import annotations

import pytest

from recorder.camera.states import (
    GAP_STATES,
    RESOURCE_RETRY_MAX,
    TRANSITIONS,
    WAITING_TO_RESTART,
    CameraStateMachine,
    InvalidTransition,
    jittered_backoff_bounds,
    state_after_end,
)
from recorder.domain.vocabulary import CameraState, RestartReason

S = CameraState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def machine_in(state: CameraState, clock: FakeClock, path: tuple[CameraState, ...] = ()) -> CameraStateMachine:
    machine = CameraStateMachine(clock)
    for step in path or _path_to(state):
        machine.change_state(step)
    assert machine.state is state
    return machine


def _path_to(state: CameraState) -> tuple[CameraState, ...]:
    return {
        S.STOPPED: (),
        S.STARTING: (S.STARTING,),
        S.RECORDING: (S.STARTING, S.RECORDING),
        S.STALLED: (S.STARTING, S.RECORDING, S.STALLED),
        S.BACKOFF: (S.BACKOFF,),
        S.FAILED: (S.FAILED,),
        S.WAITING_FOR_DEVICE: (S.WAITING_FOR_DEVICE,),
        S.STORAGE_ERROR: (S.STORAGE_ERROR,),
    }[state]


def test_stopped_to_starting_when_the_supervisor_launches_ffmpeg() -> None:
    clock = FakeClock()
    machine = machine_in(S.STOPPED, clock)
    assert machine.change_state(S.STARTING) is S.STOPPED
    assert machine.running and machine.counting_gap


def test_starting_to_recording_when_frames_are_written() -> None:
    clock = FakeClock()
    machine = machine_in(S.STARTING, clock)
    clock.advance(3)
    machine.change_state(S.RECORDING)
    assert machine.gap == 3.0 and not machine.counting_gap  # the start's seconds were a gap, recording is not


def test_recording_to_stalled_when_progress_stops() -> None:
    clock = FakeClock()
    machine = machine_in(S.RECORDING, clock)
    last_advance = clock.now
    clock.advance(10)
    machine.change_state(S.STALLED, frames_until=last_advance)  # nothing was recorded since the last frame
    clock.advance(2)
    assert machine.gap_so_far(clock.now) == 12.0


def test_starting_to_stalled_when_no_frame_ever_comes() -> None:
    clock = FakeClock()
    machine = machine_in(S.STARTING, clock)
    clock.advance(20)
    machine.change_state(S.STALLED, frames_until=clock.now - 20)  # the start already counts as a gap
    assert machine.gap == 20.0


def test_stalled_to_backoff_when_ffmpeg_is_killed() -> None:
    clock = FakeClock()
    machine = machine_in(S.STALLED, clock)
    machine.change_state(S.BACKOFF)
    assert machine.counting_gap and not machine.running


def test_recording_to_failed_when_the_configuration_cannot_work() -> None:
    clock = FakeClock()
    machine = machine_in(S.RECORDING, clock)
    machine.change_state(S.FAILED)
    assert machine.state is S.FAILED and machine.counting_gap


@pytest.mark.parametrize(
    "old",
    [S.BACKOFF, S.WAITING_FOR_DEVICE, S.STORAGE_ERROR, S.FAILED],
    ids=[
        "backoff_to_starting_when_the_wait_is_over",
        "waiting_for_device_to_starting_when_the_camera_is_plugged_in",
        "storage_error_to_starting_when_the_folder_takes_writes_again",
        "failed_to_starting_when_the_slow_retry_comes",
    ],
)
def test_idle_to_starting_when_the_supervisor_tries_again(old: CameraState) -> None:
    """The time spent waiting, whatever for, was a recording gap."""
    clock = FakeClock()
    machine = machine_in(old, clock)
    clock.advance(4)
    machine.change_state(S.STARTING)
    assert machine.gap == 4.0


@pytest.mark.parametrize(
    ("paused", "gap"),
    [(False, 0.0), (True, 100.0)],
    ids=["recording_to_stopped_when_the_daemon_stops_is_no_gap", "recording_to_stopped_when_retention_pauses_is_a_gap"],
)
def test_recording_to_stopped(paused: bool, gap: float) -> None:
    clock = FakeClock()
    machine = machine_in(S.RECORDING, clock)
    machine.change_state(S.STOPPED, paused=paused)
    clock.advance(100)
    assert machine.gap_so_far(clock.now) == gap


@pytest.mark.parametrize("old", [S.RECORDING, S.STALLED])
def test_running_to_starting_when_no_backoff_came_between_is_refused(old: CameraState) -> None:
    machine = machine_in(old, FakeClock())
    with pytest.raises(InvalidTransition):
        machine.change_state(S.STARTING)


@pytest.mark.parametrize("old", [S.STOPPED, S.BACKOFF, S.WAITING_FOR_DEVICE, S.FAILED, S.STORAGE_ERROR])
def test_idle_to_recording_or_stalled_when_nothing_runs_is_refused(old: CameraState) -> None:
    machine = machine_in(old, FakeClock())
    for new in (S.RECORDING, S.STALLED):
        with pytest.raises(InvalidTransition):
            machine.change_state(new)
    assert machine.state is old


def test_every_state_has_its_row_and_may_stop() -> None:
    assert set(TRANSITIONS) == set(CameraState)
    assert all(S.STOPPED in targets for targets in TRANSITIONS.values())
    assert set(CameraState) >= GAP_STATES


def _failing(machine: CameraStateMachine, reason: str = RestartReason.CRASHED, **how: bool) -> float:
    """One run ends for `reason` and the camera backs off: the wait change_state chose."""
    machine.change_state(S.STARTING)
    machine.change_state(state_after_end(reason, retry=True, stopping=False, paused=False), restart=reason, **how)
    return machine.restart_in


def _within(wait: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= wait <= bounds[1]


# The backoff is jittered (recorder.camera.states.jittered_backoff): where these tests once asserted the exact
# exponential wait, they assert the bounded range around it: [d, 1.5 d] for d = initial * 2**(n-1), and
# [max / 2, max] once that reaches the cap.


def test_backoff_doubles_per_failure_up_to_the_cap_and_a_stable_run_resets_it() -> None:
    machine = CameraStateMachine(FakeClock(), backoff_initial=1.0, backoff_max=10.0)
    expected = [(1.0, 1.5), (2.0, 3.0), (4.0, 6.0), (5.0, 9.0), (5.0, 10.0), (5.0, 10.0)]
    assert [jittered_backoff_bounds(n, 1.0, 10.0) for n in range(1, 7)] == expected
    waits = [_failing(machine) for _ in range(6)]
    assert all(_within(wait, bounds) for wait, bounds in zip(waits, expected, strict=True)), waits
    assert _within(_failing(machine, stable=True), (1.0, 1.5))
    assert machine.failures == 1
    assert machine.restarts == {"crashed": 7}


def test_a_cause_dealt_with_waits_the_initial_backoff_and_counts_no_failure() -> None:
    machine = CameraStateMachine(FakeClock(), backoff_initial=1.0, backoff_max=10.0)
    _failing(machine), _failing(machine)
    assert _failing(machine, RestartReason.DISK_FULL, escalate=False) == 1.0
    assert machine.failures == 2 and _within(_failing(machine), (4.0, 6.0))  # the sequence goes on where it was


def test_a_configuration_that_cannot_work_fails_and_waits_the_cap_at_once() -> None:
    machine = CameraStateMachine(FakeClock(), backoff_initial=1.0, backoff_max=30.0)
    assert _failing(machine, RestartReason.CONFIG) == 30.0
    assert machine.state is S.FAILED and machine.restarts == {"config": 1}


def test_an_exhausted_resource_retries_within_a_lower_cap() -> None:
    machine = CameraStateMachine(FakeClock(), backoff_initial=1.0, backoff_max=30.0)
    waits = [_failing(machine, RestartReason.RESOURCE_EXHAUSTED) for _ in range(5)]
    half = RESOURCE_RETRY_MAX / 2
    expected = [(1.0, 1.5), (2.0, 3.0), (half, half + 2.0), (half, RESOURCE_RETRY_MAX), (half, RESOURCE_RETRY_MAX)]
    assert all(_within(wait, bounds) for wait, bounds in zip(waits, expected, strict=True)), waits


def test_the_camera_coming_back_starts_a_fresh_backoff_sequence() -> None:
    machine = CameraStateMachine(FakeClock(), backoff_initial=1.0, backoff_max=30.0)
    _failing(machine), _failing(machine), _failing(machine)
    machine.forget_failures()
    assert _within(_failing(machine), (1.0, 1.5))


@pytest.mark.parametrize(("initial", "cap"), [(1.0, 30.0), (0.05, 0.4), (2.0, 3.0), (5.0, 5.0)])
def test_jittered_waits_never_pass_backoff_max_and_cameras_failing_together_spread_out(
    initial: float, cap: float
) -> None:
    """Eight cameras on one hub fail together, round after round: their waits differ, even at the cap."""
    machines = [CameraStateMachine(FakeClock(), backoff_initial=initial, backoff_max=cap) for _ in range(8)]
    for failure in range(1, 12):
        waits = [_failing(machine) for machine in machines]
        low, high = jittered_backoff_bounds(failure, initial, cap)
        assert high <= cap and all(low <= wait <= high for wait in waits), (failure, waits)
        assert len(set(waits)) == 8, f"cameras restart in lockstep after failure {failure}: {waits}"


@pytest.mark.parametrize(
    ("stopping", "paused", "retry", "state"),
    [
        (False, False, True, S.BACKOFF),
        (True, False, False, S.STOPPED),
        (False, True, False, S.STOPPED),
        (False, False, False, S.WAITING_FOR_DEVICE),
    ],
    ids=["retried", "daemon_stopping", "paused_by_retention", "device_gone"],
)
def test_where_a_run_that_ended_by_itself_goes(stopping: bool, paused: bool, retry: bool, state: CameraState) -> None:
    assert state_after_end(RestartReason.CRASHED, retry=retry, stopping=stopping, paused=paused) is state


def test_a_run_ended_while_the_camera_is_held_is_counted_without_a_backoff() -> None:
    """An unplug ends the run: the restart is counted with the edge to waiting_for_device, no wait is chosen."""
    clock = FakeClock()
    machine = machine_in(S.RECORDING, clock)
    machine.change_state(S.WAITING_FOR_DEVICE, restart=RestartReason.HOTPLUG)
    assert machine.restarts == {"hotplug": 1}
    assert machine.failures == 0 and machine.restart_in == 0.0


_EDGES = [(old, new) for old, targets in TRANSITIONS.items() for new in sorted(targets)]
_NON_EDGES = [(old, new) for old in CameraState for new in CameraState if new not in TRANSITIONS[old]]


@pytest.mark.parametrize(("old", "new"), _EDGES, ids=[f"{old.value}->{new.value}" for old, new in _EDGES])
def test_every_edge_accounts_the_gap_counts_the_restart_and_chooses_the_wait(
    old: CameraState, new: CameraState
) -> None:
    """Each edge of the table, taken as a restart after 7 s in `old` on a fake clock."""
    clock = FakeClock()
    machine = CameraStateMachine(clock, backoff_initial=2.0, backoff_max=60.0)
    for step in _path_to(old):
        machine.change_state(step)
    gap_before = machine.gap
    clock.advance(7)
    assert machine.change_state(new, restart=RestartReason.STALL) is old
    assert machine.state is new and machine.since == clock.now
    assert machine.gap == gap_before + (7.0 if old in GAP_STATES else 0.0)
    assert machine.counting_gap is (new in GAP_STATES)
    assert machine.restarts == {"stall": 1}
    # Jittered: the first wait lies in [backoff_initial, 1.5 * backoff_initial] (it was exactly backoff_initial).
    assert (2.0 <= machine.restart_in <= 3.0) if new in WAITING_TO_RESTART else machine.restart_in == 0.0
    assert machine.failures == (1 if new in WAITING_TO_RESTART else 0)


@pytest.mark.parametrize(("old", "new"), _NON_EDGES, ids=[f"{old.value}->{new.value}" for old, new in _NON_EDGES])
def test_every_edge_missing_from_the_table_is_refused_and_changes_nothing(old: CameraState, new: CameraState) -> None:
    clock = FakeClock()
    machine = machine_in(old, clock)
    since, gap = machine.since, machine.gap
    clock.advance(7)
    with pytest.raises(InvalidTransition):
        machine.change_state(new, restart=RestartReason.CRASHED)
    assert (machine.state, machine.since, machine.gap, machine.restarts) == (old, since, gap, {})


def test_an_edge_that_is_a_restart_counts_it_with_the_move() -> None:
    clock = FakeClock()
    machine = machine_in(CameraState.RECORDING, clock)
    machine.change_state(CameraState.BACKOFF, restart="internal_error")
    assert machine.state is CameraState.BACKOFF
    assert machine.restarts == {"internal_error": 1}
    machine.change_state(CameraState.STARTING)  # an ordinary edge counts nothing
    assert machine.restarts == {"internal_error": 1}
