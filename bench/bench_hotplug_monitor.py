"""Micro-benchmark: udev event to HotplugMonitor callback latency through a real netlink socket (run as root)."""

from __future__ import annotations

import logging
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from udev_netlink import fake_camera_properties, send_udev_event, udev_control_present  # noqa: E402

from recorder.config import CameraConfig, DeviceMatch, SourceKind  # noqa: E402
from recorder.devices.hotplug import HotplugMonitor  # noqa: E402

ROUNDS = 20
TIMEOUT = 5.0
SERIAL = "046d_Logitech_BRIO_BENCH0001"
NODE = "/dev/video4242"


def main() -> int:
    """Time ROUNDS add and ROUNDS remove events from send to callback and print the figures."""
    logging.basicConfig(level=logging.WARNING)
    camera = CameraConfig(
        id="bench", name="bench", source=SourceKind.DEVICE, location="", match=DeviceMatch(serial=SERIAL)
    )
    arrived = threading.Event()
    stamp = [0]

    def on_callback(camera_id: str, node: str) -> None:
        stamp[0] = time.perf_counter_ns()
        arrived.set()

    properties = fake_camera_properties(node=NODE, serial=SERIAL)
    latencies: dict[str, list[float]] = {"add": [], "remove": []}
    with udev_control_present():
        monitor = HotplugMonitor([camera], on_add=on_callback, on_remove=on_callback, use_udev=True)
        monitor.start()
        try:
            for _ in range(ROUNDS):
                for action in ("add", "remove"):
                    arrived.clear()
                    sent = time.perf_counter_ns()
                    send_udev_event(action, properties)
                    if not arrived.wait(TIMEOUT):
                        print(f"no {action} callback within {TIMEOUT} s", file=sys.stderr)
                        return 1
                    latencies[action].append((stamp[0] - sent) / 1000)
        finally:
            started = time.perf_counter()
            monitor.stop()
            stop_ms = (time.perf_counter() - started) * 1000
    print(f"mode={monitor.mode} rounds={ROUNDS} (includes building and sending the datagram)")
    for action, values in latencies.items():
        values.sort()
        print(
            f"{action:6s} median {statistics.median(values):8.1f} us   min {values[0]:8.1f} us   "
            f"max {values[-1]:8.1f} us"
        )
    print(f"stop   {stop_ms:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
