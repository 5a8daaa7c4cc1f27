"""Which configured camera is plugged in where, kept from udev events (or rescans): the pure half of hot-plug,
turning each event into on_add / on_remove calls. No socket and no thread of its own: the monitor feeds it."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence

from recorder.config import CameraConfig
from recorder.devices.identity import is_capture_node, match_camera, suggest_config
from recorder.domain.vocabulary import HotplugAction, values

# One log name for all of hot-plug (monitor, tracker, identity): operators and tests filter on it.
log = logging.getLogger("recorder.hotplug")

# The udev actions reported through on_event (vocabulary.HotplugAction; the metric's label tuple too).
HOTPLUG_ACTIONS: tuple[str, ...] = values(HotplugAction)

AddRemoveCallback = Callable[[str, str], None]
EventCallback = Callable[[str, bool], None]


class PresenceTracker:
    """Camera id <-> /dev/videoN for the cameras present now; every change is reported once, in order.

    Called from one thread at a time (the monitor's, or start() before that thread exists); the lock is for the
    readers (present, device_node) in other threads.
    """

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        *,
        on_add: AddRemoveCallback,
        on_remove: AddRemoveCallback,
        on_event: EventCallback | None = None,
    ) -> None:
        self.cameras = cameras
        self._on_add = on_add
        self._on_remove = on_remove
        self._on_event = on_event
        self._lock = threading.Lock()
        # camera id -> the /dev/videoN it is recorded from; absent cameras have no entry.
        self._present: dict[str, str] = {}
        # /dev/videoN -> camera id, so a remove maps back even when its event lacks the links and ids.
        self._nodes: dict[str, str] = {}

    def present(self, camera_id: str) -> bool:
        with self._lock:
            return camera_id in self._present

    def device_node(self, camera_id: str) -> str | None:
        with self._lock:
            return self._present.get(camera_id)

    def handle_event(self, action: str, properties: Mapping[str, str]) -> None:
        """Apply one video4linux udev event."""
        if action not in HOTPLUG_ACTIONS:
            return
        node = properties.get("DEVNAME", "")
        if action == HotplugAction.REMOVE:
            with self._lock:
                camera_id = self._nodes.get(node)
            matched = camera_id is not None or match_camera(self.cameras, properties) is not None
            self._emit_event(action, matched)
            if camera_id is not None:
                self._set_absent(camera_id, node)
            return
        camera = match_camera(self.cameras, properties)
        if action == HotplugAction.CHANGE:
            with self._lock:
                known = node in self._nodes
            self._emit_event(action, known or camera is not None)
            return
        if camera is None:
            self._unknown_node(action, node, properties)
            self._emit_event(action, False)
            return
        self._emit_event(action, True)
        with self._lock:
            previous = self._nodes.get(node)
        if previous is not None and previous != camera.id:
            # The node was reused by another camera after a remove we never saw.
            self._set_absent(previous, node)
        self._set_present(camera.id, node)

    def reconcile(self, found: Mapping[str, str]) -> None:
        """Bring the known state to `found` (a rescan), calling on_remove and on_add for each difference."""
        with self._lock:
            before = dict(self._present)
        for camera_id, node in before.items():
            if found.get(camera_id) != node:
                self._set_absent(camera_id, node)
        for camera_id, node in found.items():
            if before.get(camera_id) != node:
                self._set_present(camera_id, node)

    def _unknown_node(self, action: str, node: str, properties: Mapping[str, str]) -> None:
        if not is_capture_node(properties):
            log.debug("ignoring %s of non-capture node %s", action, node)
            return
        log.warning(
            "unknown camera at %s (%s, usb %s:%s, serial %s, port %s) is not recorded; to record it "
            "add to the configuration:\n%s",
            node,
            properties.get("ID_V4L_PRODUCT") or properties.get("ID_MODEL", "?"),
            properties.get("ID_VENDOR_ID", "?"),
            properties.get("ID_MODEL_ID", "?"),
            properties.get("ID_SERIAL", "-"),
            properties.get("ID_PATH", "-"),
            suggest_config(properties, (c.id for c in self.cameras)),
        )

    def _set_present(self, camera_id: str, node: str) -> None:
        with self._lock:
            current = self._present.get(camera_id)
        if current == node:
            return
        if current is not None:
            if os.path.exists(current):
                # Some cameras expose two capture nodes (H.264 and MJPEG); the first one seen is kept.
                log.info(
                    "camera %s also has capture node %s; recording %s (set match.by_id to choose)",
                    camera_id,
                    node,
                    current,
                )
                return
            # The old node is gone but its remove event never came (lost events): treat as a replug.
            self._set_absent(camera_id, current)
        with self._lock:
            self._present[camera_id] = node
            self._nodes[node] = camera_id
        log.info("camera %s present at %s", camera_id, node)
        self._call(self._on_add, camera_id, node)

    def _set_absent(self, camera_id: str, node: str) -> None:
        with self._lock:
            if self._present.get(camera_id) != node:
                return
            del self._present[camera_id]
            self._nodes.pop(node, None)
        log.info("camera %s removed (was %s)", camera_id, node)
        self._call(self._on_remove, camera_id, node)

    def _emit_event(self, action: str, matched: bool) -> None:
        if self._on_event is not None:
            self._call(self._on_event, action, matched)

    @staticmethod
    def _call(callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            # The daemon's handler failing for one camera must not stop hotplug handling for all.
            log.exception("hotplug callback %s%r failed", getattr(callback, "__name__", callback), args)
