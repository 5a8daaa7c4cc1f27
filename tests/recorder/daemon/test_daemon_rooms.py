"""The rooms split out of the Recorder, each on its own: Health (what is stuck, the watchdog), Housekeeping
(signal requests and STATUS=), DeviceEvents (hot-plug routed to supervisors) and the STATUS= line. Fakes stand
in for supervisors; systemd's notify socket is a real datagram socket."""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import small_config, wait_for
from udev_netlink import fake_camera_properties

from recorder.daemon.camera_wiring import DeviceEvents
from recorder.daemon.health import Health
from recorder.daemon.housekeeping import Housekeeping, status_line
from recorder.daemon.sdnotify import Notifier

SERIAL = "046d_Logitech_BRIO_ROOMS001"


class FakeSupervisor:
    """What Health and DeviceEvents call on a CameraSupervisor."""

    def __init__(self, healthy: bool = True) -> None:
        self.is_healthy = healthy
        self.calls: list[str] = []

    def healthy(self, stale_after: float) -> bool:
        return self.is_healthy

    def device_added(self) -> None:
        self.calls.append("added")

    def device_removed(self) -> None:
        self.calls.append("removed")


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[tuple[socket.socket, Notifier]]:
    """A notify socket as systemd's, with WatchdogSec=1 (a ping due every half second), and its Notifier."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(env)
    try:
        yield sock, notifier
    finally:
        notifier.close()
        sock.close()


def _pending(sock: socket.socket) -> list[str]:
    """The datagrams already queued on the socket, without waiting for more."""
    queued = []
    while select.select([sock], [], [], 0)[0]:
        queued.append(sock.recv(4096).decode())
    return queued


def _health(supervisors: dict[str, Any], notifier: Notifier | None = None) -> Health:
    return Health(lambda: supervisors, notifier or Notifier({}))


# -- Health ----------------------------------------------------------------------------------------------


def test_nothing_is_stuck_before_the_supervisors_start() -> None:
    health = _health({"cam1": FakeSupervisor(healthy=False)})
    health.add_liveness_check("storage", lambda: False)
    assert health.stuck() == ()
    health.supervisors_started = True
    assert health.stuck() == ("cam1", "storage")


def test_stuck_lists_wedged_cameras_then_dead_threads_in_the_order_registered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wedged, retiring = FakeSupervisor(healthy=False), FakeSupervisor(healthy=False)
    health = _health({"cam1": FakeSupervisor(), "cam2": wedged, "cam3": retiring})
    health.supervisors_started = True
    health.retiring = {id(retiring)}  # a reload is stopping it: slow, not stuck

    def raises() -> bool:
        raise OSError("cannot tell")

    health.add_liveness_check("storage", lambda: True)
    health.add_liveness_check("hotplug", lambda: False)
    health.add_liveness_check("exporter", raises)
    with caplog.at_level(logging.ERROR, logger="recorder.daemon"):
        assert health.stuck() == ("cam2", "hotplug", "exporter")
    assert "liveness check exporter failed" in caplog.text


def test_a_thread_being_replaced_is_not_dead_meanwhile() -> None:
    health = _health({})
    health.supervisors_started = True
    health.add_liveness_check("hotplug", lambda: False)
    with health.replacing("hotplug"):
        assert health.stuck() == ()
    assert health.stuck() == ("hotplug",)


def test_the_watchdog_is_fed_when_due_and_only_while_nothing_is_stuck(
    notify: tuple[socket.socket, Notifier],
) -> None:
    sock, notifier = notify
    supervisor = FakeSupervisor()
    health = _health({"cam1": supervisor}, notifier)
    health.supervisors_started = True
    health.watchdog_due_now()
    health.feed_watchdog()
    health.feed_watchdog()  # not due again for half a WatchdogSec
    assert _pending(sock) == ["WATCHDOG=1"]
    supervisor.is_healthy = False
    health.watchdog_due_now()
    health.feed_watchdog()
    assert _pending(sock) == []


# -- Housekeeping ----------------------------------------------------------------------------------------


def test_requests_are_done_by_the_loop_and_a_stop_ends_it_promptly(notify: tuple[socket.socket, Notifier]) -> None:
    sock, notifier = notify
    done: list[str] = []
    status = ["cam1: starting"]
    housekeeping = Housekeeping(
        notifier,
        reload=lambda: done.append("reload"),
        log_status=lambda: done.append("status"),
        feed_watchdog=lambda: done.append("watchdog"),
        status_line=lambda: status[0],
    )
    loop = threading.Thread(target=housekeeping.run, name="housekeeping-under-test")
    loop.start()
    try:
        assert sock.recv(4096).decode() == "STATUS=cam1: starting"
        status[0] = "cam1: recording"
        housekeeping.request_reload()  # wakes the loop, which then also sends the new STATUS=
        assert sock.recv(4096).decode() == "STATUS=cam1: recording"
        housekeeping.request_status_log()
        wait_for(lambda: "status" in done, timeout=5, what="the status log")
    finally:
        housekeeping.request_stop()
        loop.join(5)
    assert not loop.is_alive(), "request_stop did not end the loop"
    assert done.count("reload") == 1 and done.count("status") == 1 and "watchdog" in done


# -- DeviceEvents and STATUS= ----------------------------------------------------------------------------


def test_hot_plug_reaches_the_cameras_supervisor_and_is_counted(tmp_path: Path) -> None:
    config = small_config(tmp_path / "rec", cameras={"usb": {"match": {"serial": SERIAL}}}, system={"udev": False})
    supervisor = FakeSupervisor()
    supervisors: dict[str, Any] = {"usb": supervisor}
    devices = DeviceEvents(lambda: supervisors, context=None)
    monitor = devices.new_monitor(config)
    props = fake_camera_properties(node="/dev/video5", serial=SERIAL)
    monitor.handle_event("add", props)
    supervisors = {"usb": (successor := FakeSupervisor())}  # a reload replaced it: events follow
    monitor.handle_event("remove", props)
    monitor.handle_event("add", fake_camera_properties(node="/dev/video6", serial="someone_else_0001"))
    assert supervisor.calls == ["added"] and successor.calls == ["removed"]
    assert devices.events == {("add", True): 1, ("remove", True): 1, ("add", False): 1}


def test_the_status_line_names_each_cameras_state_or_says_there_is_none(tmp_path: Path) -> None:
    from conftest import make_supervisor

    assert status_line([]) == "no cameras enabled"
    supervisor = make_supervisor(tmp_path)
    assert status_line([supervisor]) == f"{supervisor.camera.id}: stopped"


# -- the Recorder as its rooms see it ---------------------------------------------------------------------


def _protocol_members(protocol: type) -> set[str]:
    """What a Protocol names: its annotated attributes, properties and methods."""
    return {name for name in (*vars(protocol), *protocol.__annotations__) if not name.startswith("_")}


def test_the_recorder_offers_every_member_its_rooms_protocols_name(tmp_path: Path) -> None:
    """Reload and camera wiring reach the Recorder through Protocols (no type checker runs them): a member the
    Recorder renamed or dropped fails here, not at the first SIGHUP."""
    from recorder.daemon.camera_wiring import WiringSource
    from recorder.daemon.recorder import Recorder
    from recorder.daemon.reload import Reloadable, StorageSlot
    from recorder.ffmpeg.binary import find_tools

    config = small_config(tmp_path / "rec")
    recorder = Recorder(config, find_tools(config.system), notifier=Notifier({}))
    for protocol, holder in ((Reloadable, recorder), (WiringSource, recorder), (StorageSlot, recorder.storage_slot)):
        missing = sorted(name for name in _protocol_members(protocol) if not hasattr(holder, name))
        assert missing == [], f"{type(holder).__name__} lacks what {protocol.__name__} names: {missing}"
    assert {"config", "supervisors", "storage_slot", "stop_supervisors"} <= _protocol_members(Reloadable)
