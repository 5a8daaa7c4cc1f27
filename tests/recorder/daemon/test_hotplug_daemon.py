"""Hot-plug through the whole daemon: real udev netlink events stop and restart a camera's FFmpeg."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from daemon_harness import Daemon, alive, write_config
from udev_netlink import fake_camera_properties, send_udev_event, udev_control_present

STAND_IN = Path(__file__).resolve().parents[2] / "v4l2_standin_ffmpeg.py"


@pytest.fixture
def usb_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, dict[str, str]]]:
    serial = f"Test_Cam_{uuid.uuid4().hex[:8]}"
    props = fake_camera_properties(node=f"/dev/video{4000 + uuid.uuid4().int % 1000}", serial=serial)
    config = write_config(
        tmp_path / "config.yaml",
        tmp_path / "rec",
        cameras={"usbcam": {"match": {"serial": serial}, "input_format": "h264", "resolution": "160x120",
                            "framerate": 25}},
        system={"ffmpeg": str(STAND_IN), "udev": True},
        supervisor={"presence_check_interval": 30},
    )  # fmt: skip
    with udev_control_present():
        daemon = Daemon(config)
        try:
            # The exporter serves before the monitor subscribes; the supervisors start after it does.
            wait_for(lambda: _state(daemon) == "waiting_for_device", what="the daemon to watch udev")
            yield daemon, props
        finally:
            assert daemon.stop() == 0, daemon.log()


def _state(daemon: Daemon) -> str:
    samples = daemon.samples()
    return next(dict(k[1])["state"] for k, v in samples.items() if k[0] == "camera_recorder_camera_state" and v == 1)


def test_remove_stops_the_camera_and_add_restarts_it(usb_daemon: tuple[Daemon, dict[str, str]]) -> None:
    daemon, props = usb_daemon
    assert "hot-plug detection: udev" in daemon.log()
    assert daemon.value("camera_recorder_camera_present", camera="usbcam") == 0

    send_udev_event("add", props)
    wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="usbcam") == 1, what="recording")
    assert daemon.value("camera_recorder_camera_present", camera="usbcam") == 1
    assert daemon.value("camera_recorder_hotplug_events_total", action="add", matched="true") == 1
    pids = daemon.ffmpeg_pids()
    assert len(pids) == 1

    send_udev_event("remove", props)
    wait_for(lambda: _state(daemon) == "waiting_for_device", what="waiting_for_device after remove")
    assert daemon.value("camera_recorder_camera_present", camera="usbcam") == 0
    assert daemon.value("camera_recorder_ffmpeg_restarts_total", camera="usbcam", reason="hotplug") == 1
    assert daemon.value("camera_recorder_hotplug_events_total", action="remove", matched="true") == 1
    wait_for(lambda: not any(alive(pid) for pid in pids), what="the FFmpeg to be stopped")
    gap = daemon.value("camera_recorder_recording_gap_seconds_total", camera="usbcam") or 0
    wait_for(
        lambda: (daemon.value("camera_recorder_recording_gap_seconds_total", camera="usbcam") or 0) > gap,
        what="the gap to keep counting while unplugged",
    )

    send_udev_event("add", {**props, "DEVNAME": props["DEVNAME"] + "1"})  # renumbered on replug
    wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="usbcam") == 1, what="recording again")
    assert daemon.ffmpeg_pids().isdisjoint(pids)
    assert daemon.value("camera_recorder_hotplug_events_total", action="add", matched="true") == 2


def test_unknown_camera_is_counted_unmatched_and_logged_with_a_config_block(
    usb_daemon: tuple[Daemon, dict[str, str]],
) -> None:
    daemon, _ = usb_daemon
    stranger = fake_camera_properties(node="/dev/video4999", serial=f"Other_{uuid.uuid4().hex[:6]}")
    send_udev_event("add", stranger)
    wait_for(
        lambda: daemon.value("camera_recorder_hotplug_events_total", action="add", matched="false") == 1,
        what="the unmatched add",
    )
    wait_for(lambda: stranger["ID_SERIAL"] in daemon.log(), what="the suggested config block in the log")
    assert daemon.ffmpeg_pids() == set()
