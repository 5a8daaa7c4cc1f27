"""systemd's notify protocol, seen from a Unix datagram socket standing in for systemd."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from conftest import wait_for
from daemon_harness import Daemon, write_config


def test_ready_watchdog_status_and_stopping_reach_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    received: list[str] = []

    def drain() -> list[str]:
        while True:
            try:
                received.extend(sock.recv(4096).decode().splitlines())
            except BlockingIOError:
                return received

    # WatchdogSec=2: the daemon must ping at least every second, and only while healthy.
    daemon = Daemon(
        write_config(tmp_path / "config.yaml", tmp_path / "rec"),
        env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"},
    )
    try:
        wait_for(lambda: "READY=1" in drain(), what="READY=1")
        wait_for(lambda: drain().count("WATCHDOG=1") >= 2, what="two watchdog pings")
        wait_for(lambda: "STATUS=cam1: recording, cam2: recording" in drain(), what="a STATUS line")
        assert "STOPPING=1" not in received
    finally:
        assert daemon.stop() == 0
    wait_for(lambda: "STOPPING=1" in drain(), what="STOPPING=1")
    assert received.index("READY=1") < received.index("STOPPING=1")
    sock.close()


def test_no_notify_socket_means_no_notifications(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"), env={"NOTIFY_SOCKET": ""})
    try:
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1, what="recording")
    finally:
        assert daemon.stop() == 0
    assert "cannot notify systemd" not in daemon.log()


def test_watchdog_pings_stop_while_a_supervisor_is_wedged(tmp_path: Path) -> None:
    import threading

    from conftest import small_config

    from recorder.daemon.recorder import Recorder
    from recorder.daemon.sdnotify import Notifier
    from recorder.ffmpeg.binary import find_tools
    from recorder.ffmpeg.process import spawn_ffmpeg

    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.1)
    release = threading.Event()
    wedged = threading.Event()

    def launcher(command):  # type: ignore[no-untyped-def]
        if command.camera_id == "stuck":
            wedged.set()
            release.wait(30)  # a start that never returns, as a hung fork or device open would
        return spawn_ffmpeg(command)

    cam = {"test_pattern": True, "resolution": "160x120", "framerate": 25}
    config = small_config(tmp_path / "rec", cameras={"fine": cam, "stuck": cam})
    notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})  # ping every 0.2 s
    recorder = Recorder(config, find_tools(config.system), launcher=launcher, notifier=notifier,
                        heartbeat_stale_after=1.0)  # fmt: skip
    recorder.start()
    runner = threading.Thread(target=recorder.run)
    runner.start()

    def pings_within(seconds: float) -> int:
        count, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                count += sock.recv(4096).decode().splitlines().count("WATCHDOG=1")
            except TimeoutError:
                pass
        return count

    try:
        wait_for(wedged.is_set, what="the stuck camera's start")
        # Within its first second the wedged loop still counts as alive; after it, no more pings.
        wait_for(lambda: pings_within(1.5) == 0, timeout=10, what="the watchdog to starve")
        release.set()
        wait_for(lambda: pings_within(0.5) > 0, timeout=10, what="pings once the supervisor goes round again")
    finally:
        release.set()
        recorder.request_stop()
        runner.join(10)
        assert recorder.stop()
        sock.close()
