"""The camera state machine (recorder.states): one test per edge, a fake clock, no FFmpeg and no thread."""

from __future__ import annotations

import pytest

from recorder.states import GAP_STATES, TRANSITIONS, CameraState, CameraStateMachine, InvalidTransition

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
    machine.stalled_since(last_advance, clock.now)  # nothing was recorded since the last frame
    machine.change_state(S.STALLED)
    clock.advance(2)
    assert machine.gap_so_far(clock.now) == 12.0


def test_starting_to_stalled_when_no_frame_ever_comes() -> None:
    clock = FakeClock()
    machine = machine_in(S.STARTING, clock)
    clock.advance(20)
    machine.stalled_since(clock.now - 20, clock.now)  # not recording: the start already counts as a gap
    machine.change_state(S.STALLED)
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


def test_backoff_doubles_per_failure_up_to_the_cap_and_a_stable_run_resets_it() -> None:
    machine = CameraStateMachine(FakeClock())
    assert [machine.next_backoff(1.0, 10.0) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert machine.next_backoff(1.0, 10.0, stable=True) == 1.0
    assert machine.failures == 1


def test_restarts_are_counted_by_reason() -> None:
    machine = CameraStateMachine(FakeClock())
    for reason in ("stall", "stall", "crashed"):
        machine.count_restart(reason)
    assert machine.restarts == {"stall": 2, "crashed": 1}


def test_an_edge_that_is_a_restart_counts_it_with_the_move() -> None:
    clock = FakeClock()
    machine = machine_in(CameraState.RECORDING, clock)
    machine.change_state(CameraState.BACKOFF, restart="internal_error")
    assert machine.state is CameraState.BACKOFF
    assert machine.restarts == {"internal_error": 1}
    machine.change_state(CameraState.STARTING)  # an ordinary edge counts nothing
    assert machine.restarts == {"internal_error": 1}


def test_a_refused_edge_counts_no_restart() -> None:
    machine = machine_in(CameraState.STOPPED, FakeClock())
    with pytest.raises(InvalidTransition):
        machine.change_state(CameraState.RECORDING, restart="crashed")
    assert machine.restarts == {}
