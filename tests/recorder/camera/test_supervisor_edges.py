"""Supervisor edges driven through a fake FFmpeg: a real child process stands in, the test writes its pipes.

No FFmpeg runs: the launcher hands the supervisor pipes whose write ends the test holds, so each edge
(starting -> recording on the first frame, starting -> backoff when it dies before one) is caused by
exactly the bytes the test writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import make_supervisor, small_config, wait_for
from fake_ffmpeg import FakeFFmpeg

from recorder.camera.supervisor import CameraSupervisor
from recorder.domain.vocabulary import CameraState
from recorder.ffmpeg.presets import build_command


@contextmanager
def started(tmp_path: Path, stall_timeout: float = 30) -> Iterator[tuple[CameraSupervisor, FakeFFmpeg]]:
    """A supervisor on a fake FFmpeg, running and in `starting`; stopped (pipes closed) afterwards."""
    fake = FakeFFmpeg()
    settings = {"stall_timeout": stall_timeout, "backoff_initial": 30, "backoff_max": 60}
    sup = make_supervisor(tmp_path, fake, supervisor=settings)
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


def test_recording_to_stalled_to_backoff_counts_one_stall_restart(tmp_path: Path) -> None:
    with started(tmp_path, stall_timeout=1) as (sup, fake):
        fake.progress(5)
        wait_for(lambda: sup.snapshot.state is CameraState.RECORDING, what="recording")
        # No more frames: the watchdog sees the stall, kills the fake, and the camera backs off.
        wait_for(lambda: sup.snapshot.state is CameraState.BACKOFF, what="backoff after the stall")
        assert dict(sup.snapshot.restarts) == {"stall": 1}
        assert sup.snapshot.gap_growing and sup.snapshot.gap_seconds >= 1.0  # the stalled second was a gap


def test_recording_to_waiting_for_device_counts_the_hotplug_restart_once(tmp_path: Path) -> None:
    """The run the unplug ended is counted with the edge to waiting_for_device: no backoff edge follows it."""
    node = tmp_path / "video-usb1"
    node.touch()
    cfg = small_config(
        tmp_path / "rec",
        cameras={"stand_in": {"test_pattern": True}, "usbcam": {"device": str(node)}},
        supervisor={"stall_timeout": 30, "backoff_initial": 30, "backoff_max": 60, "presence_check_interval": 0.1},
    )
    fake = FakeFFmpeg()
    sup = CameraSupervisor(
        cfg.camera("usbcam"),
        lambda device, suffix: build_command(cfg.camera("stand_in"), cfg, "ffmpeg", name_suffix=suffix),
        cfg.supervisor,
        segment_time=cfg.recording.segment_time,
        ffprobe="ffprobe",
        device_node=lambda: str(node) if node.exists() else None,
        launcher=fake,
    )
    sup.start()
    try:
        wait_for(lambda: sup.snapshot.state is CameraState.STARTING, what="starting")
        fake.progress(5)
        wait_for(lambda: sup.snapshot.state is CameraState.RECORDING, what="recording")
        node.unlink()
        sup.device_removed()
        wait_for(lambda: sup.snapshot.state is CameraState.WAITING_FOR_DEVICE, what="waiting_for_device")
        taken = sup.snapshot.taken_at
        wait_for(lambda: sup.snapshot.taken_at > taken, what="another round waiting for the device")
        assert dict(sup.snapshot.restarts) == {"hotplug": 1}
        assert fake.starts == 1
    finally:
        fake.close()
        sup.stop(timeout=10)
