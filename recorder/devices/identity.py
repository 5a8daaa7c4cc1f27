"""Stable identity of USB video nodes: which configured camera a node is (by path, serial, port, USB id or
by-id link), where a camera is now, and the config block that would record an unknown one."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping

import pyudev

from recorder.config import CameraConfig
from recorder.domain.vocabulary import SourceKind

# One log name for all of hot-plug (monitor, tracker, identity): operators and tests filter on it.
log = logging.getLogger("recorder.hotplug")

SUBSYSTEM = "video4linux"
CAPTURE_CAPABILITY = ":capture:"
# A node's index under its USB interface: 0 is the first capture node, metadata nodes come after.
_INDEX0_LINK = "-video-index0"
_VIDEO_NUMBER_RE = re.compile(r"(\d+)$")


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


def enumerate_video_nodes(context: pyudev.Context) -> list[dict[str, str]]:
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
            for properties in enumerate_video_nodes(context):
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


def scan_present(cameras: Iterable[CameraConfig], *, context: pyudev.Context | None, from_udev: bool) -> dict[str, str]:
    """Camera id -> node for every configured camera present now: from udev's database when it is watched,
    else by looking each camera up (its path, or its links)."""
    cameras = list(cameras)
    found: dict[str, str] = {}
    if from_udev and context is not None:
        for properties in enumerate_video_nodes(context):
            camera = match_camera(cameras, properties)
            if camera is not None:
                found.setdefault(camera.id, properties["DEVNAME"])
        return found
    for camera in cameras:
        node = resolve_device(camera, context=context)
        if node is not None:
            found[camera.id] = node
    return found
