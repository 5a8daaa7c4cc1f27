"""PresenceTracker, the pure half of hot-plug: udev events (as property mappings) in, on_add/on_remove out.
No netlink socket and no thread: each event is applied by a plain call."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from udev_netlink import fake_camera_properties

from recorder.config import CameraConfig, DeviceMatch, SourceKind
from recorder.devices.tracker import PresenceTracker

SERIAL_A = "046d_Logitech_BRIO_AAAA0001"
SERIAL_B = "046d_Logitech_BRIO_BBBB0002"


def _camera(camera_id: str, serial: str) -> CameraConfig:
    return CameraConfig(
        id=camera_id, name=camera_id, source=SourceKind.DEVICE, location="", match=DeviceMatch(serial=serial)
    )


class Calls:
    """Every callback the tracker made, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []

    def tracker(self, *cameras: CameraConfig) -> PresenceTracker:
        return PresenceTracker(
            cameras,
            on_add=lambda cid, node: self.log.append(("add", cid, node)),
            on_remove=lambda cid, node: self.log.append(("remove", cid, node)),
            on_event=lambda action, matched: self.log.append(("event", action, str(matched))),
        )


def test_add_then_remove_reports_each_once_and_a_repeated_add_is_no_news() -> None:
    calls = Calls()
    tracker = calls.tracker(_camera("front", SERIAL_A))
    props = fake_camera_properties(node="/dev/video7", serial=SERIAL_A)
    tracker.handle_event("add", props)
    tracker.handle_event("add", props)  # seen by the first scan and by udev: harmless
    assert tracker.present("front") and tracker.device_node("front") == "/dev/video7"
    # A remove event may carry no identity at all: the node maps it back.
    tracker.handle_event("remove", {"DEVNAME": "/dev/video7"})
    assert not tracker.present("front") and tracker.device_node("front") is None
    assert calls.log == [
        ("event", "add", "True"), ("add", "front", "/dev/video7"),
        ("event", "add", "True"),
        ("event", "remove", "True"), ("remove", "front", "/dev/video7"),
    ]  # fmt: skip


def test_events_of_other_nodes_are_counted_unmatched_and_change_no_state() -> None:
    calls = Calls()
    tracker = calls.tracker(_camera("front", SERIAL_A))
    stranger = fake_camera_properties(node="/dev/video9", serial=SERIAL_B)
    tracker.handle_event("add", stranger)
    tracker.handle_event("change", stranger)
    tracker.handle_event("remove", stranger)
    tracker.handle_event("bind", stranger)  # not a hot-plug action: ignored altogether
    assert calls.log == [("event", "add", "False"), ("event", "change", "False"), ("event", "remove", "False")]
    assert not tracker.present("front")


def test_a_node_taken_over_after_a_lost_remove_moves_to_its_new_camera() -> None:
    calls = Calls()
    tracker = calls.tracker(_camera("front", SERIAL_A), _camera("back", SERIAL_B))
    tracker.handle_event("add", fake_camera_properties(node="/dev/video3", serial=SERIAL_A))
    # front's remove never arrived; back now shows up at the same node.
    tracker.handle_event("add", fake_camera_properties(node="/dev/video3", serial=SERIAL_B))
    assert calls.log[-2:] == [("remove", "front", "/dev/video3"), ("add", "back", "/dev/video3")]
    assert tracker.device_node("back") == "/dev/video3" and not tracker.present("front")


def test_a_rescan_reconciles_what_events_missed(tmp_path: Path) -> None:
    calls = Calls()
    tracker = calls.tracker(_camera("front", SERIAL_A), _camera("back", SERIAL_B))
    tracker.reconcile({"front": str(tmp_path / "video1")})
    tracker.reconcile({"back": str(tmp_path / "video2")})
    assert calls.log == [
        ("add", "front", str(tmp_path / "video1")),
        ("remove", "front", str(tmp_path / "video1")),
        ("add", "back", str(tmp_path / "video2")),
    ]


def test_a_second_capture_node_of_a_present_camera_is_not_recorded(tmp_path: Path) -> None:
    """Some cameras expose two capture nodes: while the first still exists it stays the recorded one."""
    first, second = tmp_path / "video0", tmp_path / "video2"
    first.touch()
    calls = Calls()
    tracker = calls.tracker(_camera("front", SERIAL_A))
    tracker.handle_event("add", fake_camera_properties(node=str(first), serial=SERIAL_A))
    tracker.handle_event("add", fake_camera_properties(node=str(second), serial=SERIAL_A))
    assert tracker.device_node("front") == str(first)
    first.unlink()  # the first node went away and its remove was lost: the next add is a replug
    tracker.handle_event("add", fake_camera_properties(node=str(second), serial=SERIAL_A))
    assert tracker.device_node("front") == str(second)
    assert [c for c in calls.log if c[0] != "event"] == [
        ("add", "front", str(first)), ("remove", "front", str(first)), ("add", "front", str(second)),
    ]  # fmt: skip


def test_a_failing_callback_is_logged_and_the_state_still_follows(caplog: pytest.LogCaptureFixture) -> None:
    def broken(camera_id: str, node: str) -> None:
        raise RuntimeError("handler bug")

    tracker = PresenceTracker([_camera("front", SERIAL_A)], on_add=broken, on_remove=broken)
    with caplog.at_level(logging.ERROR, logger="recorder.hotplug"):
        tracker.handle_event("add", fake_camera_properties(node="/dev/video7", serial=SERIAL_A))
    assert tracker.present("front")
    assert "hotplug callback broken('front', '/dev/video7') failed" in caplog.text
