"""systemd's notify protocol, seen from a Unix datagram socket standing in for systemd."""

from __future__ import annotations

import socket
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
