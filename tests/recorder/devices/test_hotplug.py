"""Hotplug: stable camera identity, and the monitor driven by real udev netlink events and by polling."""

from __future__ import annotations

import logging
import os
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from udev_netlink import fake_camera_properties, send_udev_event, udev_control_present

from recorder.config import CameraConfig, DeviceMatch, SourceKind, parse_config
from recorder.devices import hotplug
from recorder.devices.hotplug import HotplugMonitor
from recorder.devices.identity import camera_matches, device_links, match_camera, resolve_device, suggest_config
from recorder.devices.tracker import HOTPLUG_ACTIONS

DEADLINE = 5.0  # seconds; generous so a loaded CI machine does not flake, never a sleep


def device_camera(camera_id: str, location: str = "", **match: str) -> CameraConfig:
    """A device camera as the config loader builds it."""
    return CameraConfig(
        id=camera_id,
        name=camera_id,
        source=SourceKind.DEVICE,
        location=location,
        match=DeviceMatch(**match) if match else None,
    )


def props(**kwargs: object) -> dict[str, str]:
    """Properties of a fake camera's capture node."""
    return fake_camera_properties(**kwargs)  # type: ignore[arg-type]


def matches(camera: CameraConfig, properties: dict[str, str]) -> bool:
    return camera_matches(camera, properties, device_links(properties))


SERIAL_A = "046d_Logitech_BRIO_AAAA1111"
SERIAL_B = "046d_Logitech_BRIO_BBBB2222"
PORT_1 = "pci-0000:00:14.0-usb-0:1:1.0"
PORT_2 = "pci-0000:00:14.0-usb-0:2:1.0"


# ---------------------------------------------------------------------------------------------
# Matching


def test_device_path_matches_devname() -> None:
    assert matches(device_camera("cam", "/dev/video7"), props(node="/dev/video7"))
    assert not matches(device_camera("cam", "/dev/video7"), props(node="/dev/video8"))


def test_device_path_matches_by_id_and_by_path_links() -> None:
    node = props(node="/dev/video3", serial=SERIAL_A, id_path=PORT_1)
    assert matches(device_camera("cam", f"/dev/v4l/by-id/usb-{SERIAL_A}-video-index0"), node)
    assert matches(device_camera("cam", f"/dev/v4l/by-path/{PORT_1}-video-index0"), node)
    assert not matches(device_camera("cam", f"/dev/v4l/by-id/usb-{SERIAL_B}-video-index0"), node)


def test_device_path_matches_a_udev_rule_symlink() -> None:
    node = props(node="/dev/video2", extra_links=("/dev/video-usb1-video0",))
    assert matches(device_camera("cam", "/dev/video-usb1-video0"), node)
    assert not matches(device_camera("cam", "/dev/video-usb2-video0"), node)


def test_match_by_serial_accepts_id_serial_and_the_bare_serial() -> None:
    node = props(serial=SERIAL_A)
    assert matches(device_camera("cam", serial=SERIAL_A), node)
    assert matches(device_camera("cam", serial="AAAA1111"), node)
    assert not matches(device_camera("cam", serial=SERIAL_B), node)


def test_match_by_id_path() -> None:
    assert matches(device_camera("cam", id_path=PORT_1), props(id_path=PORT_1))
    assert not matches(device_camera("cam", id_path=PORT_1), props(id_path=PORT_2))


def test_match_by_usb_id() -> None:
    assert matches(device_camera("cam", usb_id="046d:085e"), props(vendor="046d", product="085e"))
    assert matches(device_camera("cam", usb_id="046d:085e"), props(vendor="046D", product="085E"))
    assert not matches(device_camera("cam", usb_id="046d:085e"), props(vendor="046d", product="082d"))


def test_match_by_id_link_name_or_path() -> None:
    node = props(serial=SERIAL_A)
    name = f"usb-{SERIAL_A}-video-index0"
    assert matches(device_camera("cam", by_id=name), node)
    assert matches(device_camera("cam", by_id=f"/dev/v4l/by-id/{name}"), node)
    assert not matches(device_camera("cam", by_id=f"usb-{SERIAL_B}-video-index0"), node)


def test_every_match_field_must_match() -> None:
    camera = device_camera("cam", serial=SERIAL_A, id_path=PORT_1, usb_id="046d:085e")
    assert matches(camera, props(serial=SERIAL_A, id_path=PORT_1))
    assert not matches(camera, props(serial=SERIAL_A, id_path=PORT_2))
    assert not matches(camera, props(serial=SERIAL_A, id_path=PORT_1, product="082d"))


def test_device_path_and_match_together_both_apply() -> None:
    camera = device_camera("cam", "/dev/video0", serial=SERIAL_A)
    assert matches(camera, props(node="/dev/video0", serial=SERIAL_A))
    assert not matches(camera, props(node="/dev/video0", serial=SERIAL_B))


def test_two_identical_cameras_are_told_apart_by_serial() -> None:
    left = device_camera("left", usb_id="046d:085e", serial=SERIAL_A)
    right = device_camera("right", usb_id="046d:085e", serial=SERIAL_B)
    cameras = [left, right]
    assert match_camera(cameras, props(node="/dev/video0", serial=SERIAL_A)) is left
    assert match_camera(cameras, props(node="/dev/video2", serial=SERIAL_B)) is right


def test_two_identical_cameras_without_serial_are_told_apart_by_usb_port() -> None:
    # Cheap cameras report no serial number: ID_SERIAL is just vendor_model and the same for both.
    left = device_camera("left", usb_id="046d:085e", id_path=PORT_1)
    right = device_camera("right", usb_id="046d:085e", id_path=PORT_2)
    cameras = [left, right]
    assert match_camera(cameras, props(serial="046d_Logitech_BRIO", id_path=PORT_1)) is left
    assert match_camera(cameras, props(serial="046d_Logitech_BRIO", id_path=PORT_2)) is right


def test_replug_into_another_port_maps_back_by_serial() -> None:
    camera = device_camera("door", serial=SERIAL_A)
    other = device_camera("yard", serial=SERIAL_B)
    before = props(node="/dev/video0", serial=SERIAL_A, id_path=PORT_1)
    after = props(node="/dev/video4", serial=SERIAL_A, id_path=PORT_2)
    assert match_camera([other, camera], before) is camera
    assert match_camera([other, camera], after) is camera


def test_renumbered_node_maps_back_through_the_by_id_link() -> None:
    camera = device_camera("door", f"/dev/v4l/by-id/usb-{SERIAL_A}-video-index0")
    assert match_camera([camera], props(node="/dev/video0", serial=SERIAL_A)) is camera
    assert match_camera([camera], props(node="/dev/video6", serial=SERIAL_A)) is camera


def test_metadata_node_never_matches() -> None:
    metadata = props(node="/dev/video1", serial=SERIAL_A, id_path=PORT_1, metadata=True)
    for camera in (
        device_camera("a", "/dev/video1"),
        device_camera("b", serial=SERIAL_A),
        device_camera("c", id_path=PORT_1),
        device_camera("d", usb_id="046d:085e"),
        device_camera("e", by_id=f"usb-{SERIAL_A}-video-index1"),
    ):
        assert not matches(camera, metadata), camera.id
    assert match_camera([device_camera("b", serial=SERIAL_A)], metadata) is None


def test_node_without_capabilities_is_accepted() -> None:
    # Polling mode has no udev database, so the capability property is absent: the path decides alone.
    assert matches(device_camera("cam", "/dev/video0"), {"DEVNAME": "/dev/video0"})


def test_non_device_and_identity_less_cameras_never_match() -> None:
    url = CameraConfig(id="ip", name="ip", source=SourceKind.URL, location="rtsp://cam/stream")
    assert not matches(url, props())
    assert not matches(device_camera("empty"), props())


def test_most_specific_camera_wins(caplog: pytest.LogCaptureFixture) -> None:
    any_brio = device_camera("any_brio", usb_id="046d:085e")
    this_brio = device_camera("this_brio", usb_id="046d:085e", serial=SERIAL_A)
    assert match_camera([any_brio, this_brio], props(serial=SERIAL_A)) is this_brio
    assert match_camera([any_brio, this_brio], props(serial=SERIAL_B)) is any_brio


def test_equal_claims_are_logged_as_ambiguous(caplog: pytest.LogCaptureFixture) -> None:
    first = device_camera("first", usb_id="046d:085e")
    second = device_camera("second", usb_id="046d:085e")
    with caplog.at_level(logging.WARNING, logger="recorder.hotplug"):
        assert match_camera([first, second], props(node="/dev/video0")) is first
    assert "cameras first, second all match /dev/video0" in caplog.text
    assert "equally; using first" in caplog.text


def test_hotplug_actions_are_the_metric_label_values() -> None:
    from exporter.metrics import HOTPLUG_ACTIONS as METRIC_ACTIONS

    assert HOTPLUG_ACTIONS == METRIC_ACTIONS


# ---------------------------------------------------------------------------------------------
# Resolving the current node, and the config suggested for unknown cameras


def test_resolve_device_follows_the_configured_link(tmp_path: Path) -> None:
    target = tmp_path / "video3"
    link = tmp_path / "video-usb1"
    link.symlink_to(target)
    camera = device_camera("cam", str(link))
    assert resolve_device(camera, context=None) is None
    target.touch()
    assert resolve_device(camera, context=None) == str(target)


def test_resolve_device_finds_match_cameras_by_their_udev_links(tmp_path: Path) -> None:
    node = tmp_path / "video5"
    node.touch()
    (tmp_path / "v4l" / "by-id").mkdir(parents=True)
    (tmp_path / "v4l" / "by-path").mkdir(parents=True)
    (tmp_path / "v4l" / "by-id" / f"usb-{SERIAL_A}-video-index0").symlink_to(node)
    (tmp_path / "v4l" / "by-path" / f"{PORT_1}-video-index0").symlink_to(node)
    root = str(tmp_path)
    assert resolve_device(device_camera("a", serial=SERIAL_A), context=None, dev_root=root) == str(node)
    assert resolve_device(device_camera("b", serial=SERIAL_A, id_path=PORT_1), context=None, dev_root=root) == str(node)
    assert resolve_device(device_camera("c", serial=SERIAL_B), context=None, dev_root=root) is None
    assert resolve_device(device_camera("d", serial=SERIAL_A, id_path=PORT_2), context=None, dev_root=root) is None


class FakeDevice:
    """Just what enumeration reads from a pyudev Device."""

    def __init__(self, properties: dict[str, str]) -> None:
        self.properties = properties


class FakeContext:
    """A pyudev Context stand-in whose enumeration returns fixed nodes."""

    def __init__(self, *nodes: dict[str, str]) -> None:
        self.nodes = nodes

    def list_devices(self, **match: str) -> list[FakeDevice]:
        assert match == {"subsystem": "video4linux"}
        return [FakeDevice(node) for node in self.nodes]


def test_resolve_device_enumerates_udev_for_match_cameras() -> None:
    context = FakeContext(
        props(node="/dev/video1", serial=SERIAL_A, metadata=True),
        props(node="/dev/video0", serial=SERIAL_A),
        props(node="/dev/video2", serial=SERIAL_B),
    )
    assert resolve_device(device_camera("a", serial=SERIAL_A), context=context) == "/dev/video0"  # type: ignore[arg-type]
    assert resolve_device(device_camera("b", serial=SERIAL_B), context=context) == "/dev/video2"  # type: ignore[arg-type]
    assert resolve_device(device_camera("c", usb_id="1234:5678"), context=context) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("properties", "expected_key"),
    [
        (props(serial=SERIAL_A), "serial"),
        ({**props(serial="046d_Logitech_BRIO"), "ID_SERIAL_SHORT": ""}, "id_path"),
    ],
    ids=["with-serial", "without-serial"],
)
def test_suggested_config_loads_and_records_that_camera(properties: dict[str, str], expected_key: str) -> None:
    if not properties["ID_SERIAL_SHORT"]:
        del properties["ID_SERIAL_SHORT"]
    block = suggest_config(properties, taken_ids=["camera1"])
    raw = yaml.safe_load(block)
    assert list(raw["cameras"]) == ["camera2"]
    assert expected_key in raw["cameras"]["camera2"]["match"]
    config = parse_config(raw)
    assert match_camera(config.cameras, properties) is config.cameras[0]


# ---------------------------------------------------------------------------------------------
# The monitor


class Calls:
    """Records monitor callbacks and lets a test wait for one with a deadline."""

    def __init__(self, fail_first_add: bool = False) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.cond = threading.Condition()
        self.fail_first_add = fail_first_add

    def _record(self, *call: str) -> None:
        with self.cond:
            self.calls.append(call)
            self.cond.notify_all()

    def on_add(self, camera_id: str, node: str) -> None:
        self._record("add", camera_id, node)
        if self.fail_first_add:
            self.fail_first_add = False
            raise RuntimeError("the daemon's handler failed")

    def on_remove(self, camera_id: str, node: str) -> None:
        self._record("remove", camera_id, node)

    def on_event(self, action: str, matched: bool) -> None:
        self._record("event", action, str(matched))

    def wait_for(self, *call: str) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: call in self.calls, timeout=DEADLINE)


class LogWaiter(logging.Handler):
    """Sets an event when a log record containing `needle` arrives from any thread."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()


@pytest.fixture(scope="module")
def netlink() -> Iterator[None]:
    """Real udev netlink delivery: root to send, /run/udev/control for libudev to subscribe."""
    if os.geteuid() != 0:
        pytest.fail("sending udev netlink events needs root: run the tests as root, as CI does")
    with udev_control_present():
        yield


@pytest.fixture
def unique() -> Callable[[], tuple[str, str]]:
    """Fresh (serial, node) pairs, so events other tests broadcast on this host never match ours."""

    def make() -> tuple[str, str]:
        return f"046d_Logitech_BRIO_{uuid.uuid4().hex[:10].upper()}", f"/dev/video{random.randint(1000, 999_999)}"

    return make


@pytest.fixture
def start_monitor() -> Iterator[Callable[..., tuple[HotplugMonitor, Calls]]]:
    monitors: list[HotplugMonitor] = []

    def start(
        cameras: list[CameraConfig], calls: Calls | None = None, **kwargs: object
    ) -> tuple[HotplugMonitor, Calls]:
        calls = calls or Calls()
        monitor = HotplugMonitor(
            cameras, on_add=calls.on_add, on_remove=calls.on_remove, on_event=calls.on_event, **kwargs
        )  # type: ignore[arg-type]
        monitors.append(monitor)
        monitor.start()
        return monitor, calls

    yield start
    for monitor in monitors:
        monitor.stop()


def bare_remove(properties: dict[str, str]) -> dict[str, str]:
    """A remove event as thin as the kernel's: no udev links or ids to match on."""
    return {k: properties[k] for k in ("DEVPATH", "SUBSYSTEM", "DEVNAME", "MAJOR", "MINOR")}


@pytest.mark.usefixtures("netlink")
def test_udev_add_and_remove_reach_the_callbacks(start_monitor, unique) -> None:
    serial_a, node_a = unique()
    serial_b, node_b = unique()
    front = device_camera("front", serial=serial_a)
    back = device_camera("back", f"/dev/v4l/by-id/usb-{serial_b}-video-index0")
    monitor, calls = start_monitor([front, back], use_udev=True)
    assert monitor.mode == "udev"
    assert not monitor.present("front")

    cam_a = fake_camera_properties(node=node_a, serial=serial_a, id_path=PORT_1)
    cam_b = fake_camera_properties(node=node_b, serial=serial_b, id_path=PORT_2)
    send_udev_event("add", cam_a)
    send_udev_event("add", cam_b)
    assert calls.wait_for("add", "front", node_a)
    assert calls.wait_for("add", "back", node_b)
    assert ("event", "add", "True") in calls.calls
    assert monitor.present("front") and monitor.device_node("back") == node_b

    send_udev_event("remove", bare_remove(cam_a))
    assert calls.wait_for("remove", "front", node_a)
    assert not monitor.present("front")
    assert monitor.present("back")
    assert ("event", "remove", "True") in calls.calls


@pytest.mark.usefixtures("netlink")
def test_udev_replug_at_another_node_and_port_maps_back(start_monitor, unique) -> None:
    serial, node = unique()
    _, new_node = unique()
    monitor, calls = start_monitor([device_camera("door", serial=serial)], use_udev=True)
    send_udev_event("add", fake_camera_properties(node=node, serial=serial, id_path=PORT_1))
    assert calls.wait_for("add", "door", node)
    send_udev_event("remove", fake_camera_properties(node=node, serial=serial, id_path=PORT_1))
    assert calls.wait_for("remove", "door", node)
    send_udev_event("add", fake_camera_properties(node=new_node, serial=serial, id_path=PORT_2))
    assert calls.wait_for("add", "door", new_node)
    assert monitor.device_node("door") == new_node


@pytest.mark.usefixtures("netlink")
def test_udev_metadata_node_is_not_a_camera(start_monitor, unique) -> None:
    serial, node = unique()
    _, metadata_node = unique()
    _, calls = start_monitor([device_camera("door", serial=serial)], use_udev=True)
    send_udev_event("add", fake_camera_properties(node=metadata_node, serial=serial, metadata=True))
    send_udev_event("add", fake_camera_properties(node=node, serial=serial))
    # One socket delivers in order: once the capture node is handled, the metadata node was too.
    assert calls.wait_for("add", "door", node)
    assert not [c for c in calls.calls if metadata_node in c]


@pytest.mark.usefixtures("netlink")
def test_udev_unknown_camera_is_unmatched_and_gets_a_config_suggestion(
    start_monitor, unique, caplog: pytest.LogCaptureFixture
) -> None:
    known_serial, _ = unique()
    serial, node = unique()
    waiter = LogWaiter(serial)
    logging.getLogger("recorder.hotplug").addHandler(waiter)
    try:
        with caplog.at_level(logging.INFO, logger="recorder.hotplug"):
            _, calls = start_monitor([device_camera("camera1", serial=known_serial)], use_udev=True)
            send_udev_event("add", fake_camera_properties(node=node, serial=serial, id_path=PORT_2))
            assert waiter.seen.wait(DEADLINE)
    finally:
        logging.getLogger("recorder.hotplug").removeHandler(waiter)
    assert calls.wait_for("event", "add", "False")
    record = next(r for r in caplog.records if serial in r.getMessage())
    assert record.levelno == logging.WARNING
    suggestion = record.getMessage().split("\n", 1)[1]
    assert yaml.safe_load(suggestion) == {
        "cameras": {"camera2": {"name": "Logitech BRIO", "match": {"serial": serial}}},
    }
    assert not [c for c in calls.calls if c[0] == "add"]


@pytest.mark.usefixtures("netlink")
def test_udev_change_events_are_reported(start_monitor, unique) -> None:
    serial, node = unique()
    _, calls = start_monitor([device_camera("door", serial=serial)], use_udev=True)
    properties = fake_camera_properties(node=node, serial=serial)
    send_udev_event("add", properties)
    assert calls.wait_for("add", "door", node)
    send_udev_event("change", properties)
    assert calls.wait_for("event", "change", "True")
    assert [c for c in calls.calls if c[0] in ("add", "remove")] == [("add", "door", node)]


@pytest.mark.usefixtures("netlink")
def test_udev_callback_raising_does_not_kill_the_monitor(start_monitor, unique, caplog) -> None:
    serial_a, node_a = unique()
    serial_b, node_b = unique()
    cameras = [device_camera("a", serial=serial_a), device_camera("b", serial=serial_b)]
    with caplog.at_level(logging.ERROR, logger="recorder.hotplug"):
        monitor, calls = start_monitor(cameras, Calls(fail_first_add=True), use_udev=True)
        send_udev_event("add", fake_camera_properties(node=node_a, serial=serial_a))
        send_udev_event("add", fake_camera_properties(node=node_b, serial=serial_b))
        assert calls.wait_for("add", "b", node_b)
    assert monitor.running
    assert "hotplug callback on_add" in caplog.text


@pytest.mark.usefixtures("netlink")
def test_udev_monitor_stops_promptly(unique) -> None:
    calls = Calls()
    monitor = HotplugMonitor([], on_add=calls.on_add, on_remove=calls.on_remove, use_udev=True)
    monitor.start()
    assert monitor.running
    monitor.stop()
    assert not monitor.running


def test_mode_follows_udev_availability(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def make(use_udev: bool | None) -> HotplugMonitor:
        return HotplugMonitor([], on_add=print, on_remove=print, use_udev=use_udev)

    monkeypatch.setattr(hotplug, "UDEV_CONTROL", str(tmp_path / "control"))
    assert make(None).mode == "polling"
    assert make(False).mode == "polling"
    assert make(True).mode == "udev"
    (tmp_path / "control").touch()
    assert make(None).mode == "udev"
    assert make(False).mode == "polling"


def test_polling_reports_a_camera_coming_and_going(start_monitor, tmp_path: Path) -> None:
    link = tmp_path / "video-usb1"
    first, second = tmp_path / "video3", tmp_path / "video5"
    link.symlink_to(first)
    monitor, calls = start_monitor([device_camera("door", str(link))], use_udev=False, poll_interval=0.05)
    assert monitor.mode == "polling"
    assert not monitor.present("door")

    first.touch()
    assert calls.wait_for("add", "door", str(first))
    assert monitor.present("door")

    # Replugged between two polls: the link now names another node.
    second.touch()
    link.unlink()
    link.symlink_to(second)
    assert calls.wait_for("add", "door", str(second))
    assert calls.calls.index(("remove", "door", str(first))) < calls.calls.index(("add", "door", str(second)))

    second.unlink()
    assert calls.wait_for("remove", "door", str(second))
    assert not monitor.present("door")
    assert not [c for c in calls.calls if c[0] == "event"]  # udev events only, none polled


def test_start_reports_cameras_already_present(start_monitor, tmp_path: Path) -> None:
    node = tmp_path / "video0"
    node.touch()
    context = FakeContext(props(node="/dev/video9", serial=SERIAL_A))
    cameras = [device_camera("door", str(node)), device_camera("yard", serial=SERIAL_A), device_camera("gone", "/x")]
    monitor, calls = start_monitor(cameras, use_udev=False, poll_interval=60.0, context=context)
    # Reported synchronously by start(), before any poll.
    assert calls.calls == [("add", "door", str(node)), ("add", "yard", "/dev/video9")]
    assert monitor.present("yard") and not monitor.present("gone")


def test_polling_monitor_stops_promptly(tmp_path: Path) -> None:
    calls = Calls()
    monitor = HotplugMonitor([], on_add=calls.on_add, on_remove=calls.on_remove, use_udev=False, poll_interval=3600)
    monitor.start()
    assert monitor.running
    monitor.stop()
    assert not monitor.running


def test_stop_from_inside_a_callback_ends_the_thread(tmp_path: Path) -> None:
    node = tmp_path / "video0"
    calls = Calls()
    holder: list[HotplugMonitor] = []

    def on_add(camera_id: str, device: str) -> None:
        holder[0].stop()  # must not deadlock on joining its own thread
        calls.on_add(camera_id, device)

    monitor = HotplugMonitor(
        [device_camera("door", str(node))], on_add=on_add, on_remove=calls.on_remove, use_udev=False, poll_interval=0.05
    )
    holder.append(monitor)
    monitor.start()
    node.touch()
    assert calls.wait_for("add", "door", str(node))
    monitor.stop()
    assert not monitor.running
