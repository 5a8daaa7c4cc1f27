"""USB camera hot-plug: a monitor reporting cameras coming and going, from udev netlink events or by polling.

Which node is which camera is recorder/devices/identity.py; the presence state each event changes is
recorder/devices/tracker.py; this module is the socket, the thread and the mode (udev or polling).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import selectors
import threading
from collections.abc import Mapping, Sequence

import pyudev

from recorder.config import CameraConfig
from recorder.devices.identity import SUBSYSTEM, scan_present
from recorder.devices.tracker import AddRemoveCallback, EventCallback, PresenceTracker
from recorder.domain.vocabulary import SourceKind

# One log name for all of hot-plug (monitor, tracker, identity): operators and tests filter on it.
log = logging.getLogger("recorder.hotplug")

UDEV_CONTROL = "/run/udev/control"
# Events handled per wakeup before the stop pipe is looked at again, so a flood cannot delay stop().
_MAX_EVENTS_PER_WAKEUP = 256
_STOP_JOIN_TIMEOUT = 2.0
_ERROR_PAUSE = 1.0  # seconds


def udev_available() -> bool:
    """Whether udevd runs here (libudev only subscribes to udev's netlink group when it does)."""
    return os.path.exists(UDEV_CONTROL)


class HotplugMonitor:
    """Reports device cameras appearing and disappearing, from udev netlink events or by polling."""

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        *,
        on_add: AddRemoveCallback,
        on_remove: AddRemoveCallback,
        on_event: EventCallback | None = None,
        use_udev: bool | None = None,
        poll_interval: float = 2.0,
        context: pyudev.Context | None = None,
    ) -> None:
        self._cameras: tuple[CameraConfig, ...] = tuple(c for c in cameras if c.source is SourceKind.DEVICE)
        self._tracker = PresenceTracker(self._cameras, on_add=on_add, on_remove=on_remove, on_event=on_event)
        self._poll_interval = poll_interval
        self._context = context
        if use_udev is False:
            self._mode, self._why = "polling", "udev disabled in the configuration"
        elif use_udev is None and not udev_available():
            self._mode, self._why = "polling", f"{UDEV_CONTROL} does not exist (udevd not running)"
        else:
            self._mode, self._why = "udev", "netlink events"
        self._lock = threading.Lock()  # guards the stop pipe, which the thread closes as it ends
        self._monitor: pyudev.Monitor | None = None  # None in polling mode and once stopped
        self._thread: threading.Thread | None = None  # None until start()
        self._stop_r: int = -1  # the stop pipe; -1 when not started
        self._stop_w: int = -1

    @property
    def mode(self) -> str:
        """The active mode: udev or polling."""
        return self._mode

    @property
    def running(self) -> bool:
        """Whether the monitor thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def present(self, camera_id: str) -> bool:
        """Whether the camera's device is plugged in, as far as the monitor knows."""
        return self._tracker.present(camera_id)

    def device_node(self, camera_id: str) -> str | None:
        """The /dev/videoN the camera is at now, or None when absent."""
        return self._tracker.device_node(camera_id)

    def start(self) -> None:
        """Subscribe, report cameras already present through on_add (before returning), then watch."""
        if self._thread is not None:
            raise RuntimeError("HotplugMonitor.start() called twice")
        if self._mode == "udev":
            try:
                self._start_udev()
            except (OSError, ImportError) as exc:
                log.warning("cannot subscribe to udev events (%s); falling back to polling", exc)
                self._mode, self._why, self._monitor = "polling", f"udev subscription failed: {exc}", None
        if self._mode == "udev":
            log.info("hotplug: udev mode (%s) for %d device camera(s)", self._why, len(self._cameras))
        else:
            log.info(
                "hotplug: polling mode every %.2g s (%s) for %d device camera(s)",
                self._poll_interval,
                self._why,
                len(self._cameras),
            )
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        # Subscribing before the first scan means a camera plugged in meanwhile is seen by one or both;
        # the tracker makes seeing it twice harmless.
        self._tracker.reconcile(self._scan())
        self._thread = threading.Thread(target=self._listen, name="hotplug", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; returns once the monitor thread has ended (promptly: it waits on a stop pipe)."""
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            # Under the lock: the thread closes the pipe under it too, so a reused fd number is never written.
            if self._stop_w >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._stop_w, b"x")
        # Called from a callback the thread ends by itself once the callback returns.
        if thread is not threading.current_thread():
            thread.join(_STOP_JOIN_TIMEOUT)
            if thread.is_alive():
                log.warning(
                    "hotplug thread did not stop within %.1f s (a callback is still running)", _STOP_JOIN_TIMEOUT
                )

    def _start_udev(self) -> None:
        if self._context is None:
            self._context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(self._context, source="udev")
        monitor.filter_by(SUBSYSTEM)
        monitor.start()
        self._monitor = monitor

    # -- the monitor thread

    def _listen(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("hotplug monitor thread failed; camera hotplug is no longer watched")
        finally:
            with self._lock:
                for fd in (self._stop_r, self._stop_w):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._stop_r = self._stop_w = -1
            # Dropping the last reference unrefs the libudev monitor, which closes its netlink socket.
            self._monitor = None

    def _loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._stop_r, selectors.EVENT_READ, "stop")
            monitor = self._monitor
            if monitor is not None:
                selector.register(monitor.fileno(), selectors.EVENT_READ, "udev")
            # Polling with no device camera to look for would only wake the daemon for nothing.
            timeout = None if monitor is not None or not self._cameras else self._poll_interval
            while True:
                ready = selector.select(timeout)
                if any(key.data == "stop" for key, _ in ready):
                    return
                try:
                    if monitor is not None:
                        self._drain(monitor)
                    else:
                        self._tracker.reconcile(self._scan())
                except Exception:
                    # One bad event or scan must not end hotplug handling for the life of the daemon; the
                    # pause keeps a persistent fault from spinning.
                    log.exception("hotplug monitor error; continuing")
                    if select.select([self._stop_r], [], [], _ERROR_PAUSE)[0]:
                        return

    def _drain(self, monitor: pyudev.Monitor) -> None:
        for _ in range(_MAX_EVENTS_PER_WAKEUP):
            try:
                device = monitor.poll(timeout=0)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # The kernel dropped events because our socket buffer overflowed: rescan to catch up.
                log.warning("udev events were lost (receive buffer overflow); rescanning video devices")
                self._tracker.reconcile(self._scan())
                continue
            if device is None:
                return
            try:
                self.handle_event(device.action or "", dict(device.properties))
            except Exception:
                log.exception("cannot handle udev %s event for %s", device.action, device.device_node)

    def handle_event(self, action: str, properties: Mapping[str, str]) -> None:
        """Apply one video4linux udev event (called by the monitor thread; public for replaying events)."""
        self._tracker.handle_event(action, properties)

    def _scan(self) -> dict[str, str]:
        """Camera id -> node for every configured camera present now."""
        return scan_present(self._cameras, context=self._context, from_udev=self._mode == "udev")
