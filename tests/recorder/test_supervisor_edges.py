"""Supervisor edges driven through a fake FFmpeg: a real child process stands in, the test writes its pipes.

No FFmpeg runs: the launcher hands the supervisor pipes whose write ends the test holds, so each edge
(starting -> recording on the first frame, starting -> backoff when it dies before one) is caused by
exactly the bytes the test writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import make_supervisor, wait_for
from fake_ffmpeg import FakeFFmpeg

from recorder.states import CameraState
from recorder.supervisor import CameraSupervisor


@contextmanager
def started(tmp_path: Path) -> Iterator[tuple[CameraSupervisor, FakeFFmpeg]]:
    """A supervisor on a fake FFmpeg, running and in `starting`; stopped (pipes closed) afterwards."""
    fake = FakeFFmpeg()
    sup = make_supervisor(tmp_path, fake, supervisor={"stall_timeout": 30, "backoff_initial": 30, "backoff_max": 60})
    sup.start()
    try:
        wait_for(lambda: sup.snapshot.state is CameraState.STARTING, what="starting")
        yield sup, fake
    finally:
        fake.close()
        sup.stop(timeout=10)


def test_starting_to_recording_when_the_first_frame_is_written(tmp_path: Path) -> None:
    with started(tmp_path) as (sup, fake):
        fake.progress(0)  # progress without a frame: still starting
        fake.progress(5)
        wait_for(lambda: sup.snapshot.state is CameraState.RECORDING, what="recording")
        assert sup.snapshot.frames == 5


def test_starting_to_backoff_when_ffmpeg_dies_before_its_first_frame(tmp_path: Path) -> None:
    with started(tmp_path) as (sup, fake):
        fake.dies("Something unexpected")
        wait_for(lambda: sup.snapshot.state is CameraState.BACKOFF, what="backoff")
        assert dict(sup.snapshot.restarts) == {"crashed": 1}  # a failed start, never "recording"
