"""USB camera hotplug: stable identity of video nodes and a monitor reporting cameras coming and going."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import select
import selectors
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

import pyudev

from recorder.config import CameraConfig
from recorder.vocabulary import HotplugAction, SourceKind, values

log = logging.getLogger(__name__)

SUBSYSTEM = "video4linux"
# The udev actions reported through on_event (vocabulary.HotplugAction; the metric's label tuple too).
HOTPLUG_ACTIONS: tuple[str, ...] = values(HotplugAction)
UDEV_CONTROL = "/run/udev/control"
CAPTURE_CAPABILITY = ":capture:"
# A node's index under its USB interface: 0 is the first capture node, metadata nodes come after.
_INDEX0_LINK = "-video-index0"
_VIDEO_NUMBER_RE = re.compile(r"(\d+)$")
# Events handled per wakeup before the stop pipe is looked at again, so a flood cannot delay stop().
_MAX_EVENTS_PER_WAKEUP = 256
_STOP_JOIN_TIMEOUT = 2.0
_ERROR_PAUSE = 1.0  # seconds

AddRemoveCallback = Callable[[str, str], None]
EventCallback = Callable[[str, bool], None]


# ---------------------------------------------------------------------------------------------
# Stable identity


def device_links(properties: Mapping[str, str]) -> list[str]:
    """The symlinks udev made for a node (its DEVLINKS property, space-separated)."""
    return properties.get("DEVLINKS", "").split()


def is_capture_node(properties: Mapping[str, str]) -> bool:
    """Whether a node captures video; without udev's ID_V4L_CAPABILITIES (polling mode) every node counts."""
    capabilities = properties.get("ID_V4L_CAPABILITIES")
    return capabilities is None or CAPTURE_CAPABILITY in capabilities


def _specificity(camera: CameraConfig) -> int:
    """How many identity fields a camera sets; the more, the more specific its claim on a node."""
    fields = 1 if camera.location else 0
    if camera.match is not None:
        m = camera.match
        fields += sum(1 for value in (m.serial, m.id_path, m.usb_id, m.by_id) if value)
    return fields


def _path_matches(location: str, devname: str, links: Iterable[str]) -> bool:
    """Whether a configured device path names this node: directly, as a udev link, or as a link of our own."""
    wanted = os.path.normpath(location)
    if devname and wanted == devname:
        return True
    if any(os.path.normpath(link) == wanted for link in links):
        return True
    # A symlink udev does not know about (made by a script, or a bind-mounted /dev) still names the node.
    return bool(devname) and os.path.islink(location) and os.path.realpath(location) == devname


def _by_id_matches(by_id: str, links: Iterable[str]) -> bool:
    """Whether a `match.by_id` (a /dev/v4l/by-id link name or full path) is one of the node's links."""
    if "/" in by_id:
        wanted = os.path.normpath(by_id)
        return any(os.path.normpath(link) == wanted for link in links)
    return any("/by-id/" in link and link.rsplit("/", 1)[-1] == by_id for link in links)


def camera_matches(camera: CameraConfig, properties: Mapping[str, str], links: Iterable[str]) -> bool:
    """Whether a video node with these udev properties and links is this camera's capture node."""
    if camera.source is not SourceKind.DEVICE or not is_capture_node(properties):
        return False
    match = camera.match if camera.match is not None and not camera.match.is_empty() else None
    if not camera.location and match is None:
        return False
    links = list(links)
    if camera.location and not _path_matches(camera.location, properties.get("DEVNAME", ""), links):
        return False
    if match is None:
        return True
    # ID_SERIAL is what udev shows and the config documents; the bare USB serial is accepted too because
    # that is what `lsusb -v` prints as iSerial.
    if match.serial and match.serial not in (properties.get("ID_SERIAL"), properties.get("ID_SERIAL_SHORT")):
        return False
    if match.id_path and properties.get("ID_PATH") != match.id_path:
        return False
    if match.usb_id:
        vendor, product = properties.get("ID_VENDOR_ID"), properties.get("ID_MODEL_ID")
        if not vendor or not product or f"{vendor}:{product}".lower() != match.usb_id:
            return False
    return not (match.by_id and not _by_id_matches(match.by_id, links))


def match_camera(cameras: Iterable[CameraConfig], properties: Mapping[str, str]) -> CameraConfig | None:
    """The configured device camera this node belongs to, the most specific one when several claim it."""
    links = device_links(properties)
    candidates = [cam for cam in cameras if camera_matches(cam, properties, links)]
    if not candidates:
        return None
    best = max(_specificity(cam) for cam in candidates)
    top = [cam for cam in candidates if _specificity(cam) == best]
    node = properties.get("DEVNAME", "?")
    if len(top) > 1:
        log.warning(
            "cameras %s all match %s (serial %s, port %s) equally; using %s: add match.serial or match.id_path "
            "to tell them apart",
            ", ".join(cam.id for cam in top),
            node,
            properties.get("ID_SERIAL", "-"),
            properties.get("ID_PATH", "-"),
            top[0].id,
        )
    elif len(candidates) > 1:
        log.info(
            "cameras %s match %s; %s is the most specific",
            ", ".join(cam.id for cam in candidates),
            node,
            top[0].id,
        )
    return top[0]


def _node_order(properties: Mapping[str, str]) -> tuple[int, int]:
    """Sort key among a camera's capture nodes: the interface's first node, then the lowest /dev/videoN."""
    first = any(link.endswith(_INDEX0_LINK) for link in device_links(properties))
    number = _VIDEO_NUMBER_RE.search(properties.get("DEVNAME", ""))
    return (0 if first else 1, int(number[1]) if number else 1 << 30)


def _enumerate(context: pyudev.Context) -> list[dict[str, str]]:
    """The udev properties of every video4linux node present now, capture nodes in preferred order."""
    nodes: list[dict[str, str]] = []
    for device in context.list_devices(subsystem=SUBSYSTEM):
        properties = dict(device.properties)
        if properties.get("DEVNAME"):
            nodes.append(properties)
    nodes.sort(key=_node_order)
    return nodes


def _guess_links(camera: CameraConfig, dev_root: str) -> list[str]:
    """The links udev's 60-persistent-v4l.rules would have made for a `match` camera's first capture node."""
    match = camera.match
    if match is None:
        return []
    links = []
    if match.by_id:
        links.append(match.by_id if "/" in match.by_id else os.path.join(dev_root, "v4l", "by-id", match.by_id))
    if match.serial:
        links.append(os.path.join(dev_root, "v4l", "by-id", f"usb-{match.serial}{_INDEX0_LINK}"))
    if match.id_path:
        links.append(os.path.join(dev_root, "v4l", "by-path", f"{match.id_path}{_INDEX0_LINK}"))
    return links


def resolve_device(camera: CameraConfig, *, context: pyudev.Context | None, dev_root: str = "/dev") -> str | None:
    """The camera's current /dev/videoN node, or None when it is absent."""
    if camera.source is not SourceKind.DEVICE:
        return None
    if camera.location:
        return os.path.realpath(camera.location) if os.path.exists(camera.location) else None
    if camera.match is None or camera.match.is_empty():
        return None
    if context is not None:
        try:
            for properties in _enumerate(context):
                if camera_matches(camera, properties, device_links(properties)):
                    return properties["DEVNAME"]
        except OSError as exc:
            log.debug("cannot enumerate %s devices: %s", SUBSYSTEM, exc)
    # Without a udev database (a container sharing the host's /dev) the by-id/by-path links udev made on
    # the host still identify the camera; usb_id alone has no link and cannot be resolved this way.
    guesses = _guess_links(camera, dev_root)
    nodes = {os.path.realpath(link) for link in guesses if os.path.exists(link)}
    if guesses and len(nodes) == 1 and all(os.path.exists(link) for link in guesses):
        return nodes.pop()
    return None


def suggest_config(properties: Mapping[str, str], taken_ids: Iterable[str]) -> str:
    """A YAML block, to paste under `cameras:`, that would record the camera behind these properties."""
    taken = set(taken_ids)
    number = 1
    while f"camera{number}" in taken:
        number += 1
    name = properties.get("ID_V4L_PRODUCT") or properties.get("ID_MODEL", "").replace("_", " ") or "USB camera"
    serial, serial_short = properties.get("ID_SERIAL"), properties.get("ID_SERIAL_SHORT")
    id_path = properties.get("ID_PATH")
    vendor, product = properties.get("ID_VENDOR_ID"), properties.get("ID_MODEL_ID")
    by_id = next((link for link in device_links(properties) if "/v4l/by-id/" in link), None)
    lines = [f"  camera{number}:", f"    name: {json.dumps(name)}"]
    # A real serial number follows the camera to any port; without one (ID_SERIAL is then just
    # vendor_model) only the USB port tells two identical cameras apart.
    if serial and serial_short:
        lines.append(f"    match: {{serial: {json.dumps(serial)}}}")
    elif id_path:
        fields = [f"id_path: {json.dumps(id_path)}"]
        if vendor and product:
            fields.insert(0, f"usb_id: {json.dumps(f'{vendor}:{product}'.lower())}")
        lines.append("    # no serial number: this entry is tied to the USB port the camera is in now")
        lines.append(f"    match: {{{', '.join(fields)}}}")
    elif by_id:
        lines.append(f"    device: {json.dumps(by_id)}")
    else:
        lines.append("    # no stable identity: /dev/videoN may change when the camera is plugged again")
        lines.append(f"    device: {json.dumps(properties.get('DEVNAME', '/dev/video0'))}")
    return "cameras:\n" + "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Monitor


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
        self._on_add = on_add
        self._on_remove = on_remove
        self._on_event = on_event
        self._poll_interval = poll_interval
        self._context = context
        if use_udev is False:
            self._mode, self._why = "polling", "udev disabled in the configuration"
        elif use_udev is None and not udev_available():
            self._mode, self._why = "polling", f"{UDEV_CONTROL} does not exist (udevd not running)"
        else:
            self._mode, self._why = "udev", "netlink events"
        self._lock = threading.Lock()
        # camera id -> the /dev/videoN it is recorded from; absent cameras have no entry.
        self._present: dict[str, str] = {}
        # /dev/videoN -> camera id, so a remove maps back even when its event lacks the links and ids.
        self._nodes: dict[str, str] = {}
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
        with self._lock:
            return camera_id in self._present

    def device_node(self, camera_id: str) -> str | None:
        """The /dev/videoN the camera is at now, or None when absent."""
        with self._lock:
            return self._present.get(camera_id)

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
        # _set_present makes seeing it twice harmless.
        self._reconcile(self._scan())
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
                        self._reconcile(self._scan())
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
                self._reconcile(self._scan())
                continue
            if device is None:
                return
            try:
                self.handle_event(device.action or "", dict(device.properties))
            except Exception:
                log.exception("cannot handle udev %s event for %s", device.action, device.device_node)

    def handle_event(self, action: str, properties: Mapping[str, str]) -> None:
        """Apply one video4linux udev event (called by the monitor thread; public for replaying events)."""
        if action not in HOTPLUG_ACTIONS:
            return
        node = properties.get("DEVNAME", "")
        if action == HotplugAction.REMOVE:
            with self._lock:
                camera_id = self._nodes.get(node)
            matched = camera_id is not None or match_camera(self._cameras, properties) is not None
            self._emit_event(action, matched)
            if camera_id is not None:
                self._set_absent(camera_id, node)
            return
        camera = match_camera(self._cameras, properties)
        if action == HotplugAction.CHANGE:
            with self._lock:
                known = node in self._nodes
            self._emit_event(action, known or camera is not None)
            return
        if camera is None:
            if is_capture_node(properties):
                log.warning(
                    "unknown camera at %s (%s, usb %s:%s, serial %s, port %s) is not recorded; to record it "
                    "add to the configuration:\n%s",
                    node,
                    properties.get("ID_V4L_PRODUCT") or properties.get("ID_MODEL", "?"),
                    properties.get("ID_VENDOR_ID", "?"),
                    properties.get("ID_MODEL_ID", "?"),
                    properties.get("ID_SERIAL", "-"),
                    properties.get("ID_PATH", "-"),
                    suggest_config(properties, (c.id for c in self._cameras)),
                )
            else:
                log.debug("ignoring %s of non-capture node %s", action, node)
            self._emit_event(action, False)
            return
        self._emit_event(action, True)
        with self._lock:
            previous = self._nodes.get(node)
        if previous is not None and previous != camera.id:
            # The node was reused by another camera after a remove we never saw.
            self._set_absent(previous, node)
        self._set_present(camera.id, node)

    # -- state transitions (monitor thread, or start() before the thread exists)

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

    def _scan(self) -> dict[str, str]:
        """Camera id -> node for every configured camera present now."""
        found: dict[str, str] = {}
        if self._mode == "udev" and self._context is not None:
            for properties in _enumerate(self._context):
                camera = match_camera(self._cameras, properties)
                if camera is not None:
                    found.setdefault(camera.id, properties["DEVNAME"])
            return found
        for camera in self._cameras:
            node = resolve_device(camera, context=self._context)
            if node is not None:
                found[camera.id] = node
        return found

    def _reconcile(self, found: Mapping[str, str]) -> None:
        """Bring the known state to `found`, calling on_remove and on_add for each difference."""
        with self._lock:
            before = dict(self._present)
        for camera_id, node in before.items():
            if found.get(camera_id) != node:
                self._set_absent(camera_id, node)
        for camera_id, node in found.items():
            if before.get(camera_id) != node:
                self._set_present(camera_id, node)

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
