"""Test helper: sends udev-format device events on a real NETLINK_KOBJECT_UEVENT socket (needs root)."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import socket
import struct
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

NETLINK_KOBJECT_UEVENT = 15
# libudev listens on group 1 for raw kernel uevents and group 2 for events udevd has processed.
UDEV_GROUP = 2
UDEV_MONITOR_MAGIC = 0xFEEDCAFE
UDEV_CONTROL = Path("/run/udev/control")

# struct monitor_netlink_header (systemd src/libsystemd/sd-device/device-monitor.c): an 8-byte
# "libudev\0" prefix, then eight unsigned ints. The magic and the filter hashes are in network byte
# order because the receiver's in-kernel BPF filter loads them as big-endian words; the sizes and
# offsets are read back by C code as plain host-order integers.
_PREFIX = b"libudev\0"
_HEADER_SIZE = len(_PREFIX) + 8 * 4

# Sequence numbers must be non-zero (sd-device rejects SEQNUM=0); start far from real kernel numbers.
_seqnum = itertools.count(10_000_000 + os.getpid() % 1_000 * 10_000)


def murmur_hash2(data: bytes, seed: int = 0) -> int:
    """The 32-bit MurmurHash2 of `data` as libudev computes it on little-endian hosts (systemd MurmurHash2.c)."""
    m = 0x5BD1E995
    mask = 0xFFFFFFFF
    h = (seed ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if tail:
        for i in range(len(tail) - 1, -1, -1):
            h ^= tail[i] << (8 * i)
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def tag_bloom(tags: list[str]) -> int:
    """The 64-bit tag bloom filter libudev puts in the header so subscribers can filter tags in the kernel."""
    bits = 0
    for tag in tags:
        h = murmur_hash2(tag.encode())
        for shift in (0, 6, 12, 18):
            bits |= 1 << ((h >> shift) & 63)
    return bits


def build_message(properties: Mapping[str, str]) -> bytes:
    """One libudev monitor datagram: the versioned header followed by NUL-separated KEY=value properties."""
    body = b"".join(f"{key}={value}".encode() + b"\0" for key, value in properties.items())
    subsystem_hash = murmur_hash2(properties["SUBSYSTEM"].encode())
    devtype = properties.get("DEVTYPE")
    devtype_hash = murmur_hash2(devtype.encode()) if devtype else 0
    tags = [t for t in properties.get("TAGS", "").split(":") if t]
    bloom = tag_bloom(tags)
    header = (
        _PREFIX
        + struct.pack(">I", UDEV_MONITOR_MAGIC)
        + struct.pack("=III", _HEADER_SIZE, _HEADER_SIZE, len(body))
        + struct.pack(">IIII", subsystem_hash, devtype_hash, bloom >> 32, bloom & 0xFFFFFFFF)
    )
    return header + body


def send_udev_event(action: str, properties: Mapping[str, str]) -> None:
    """Broadcast one udev event (`action` overrides ACTION) to every libudev monitor on this host's netns."""
    props = {"ACTION": action, **{k: v for k, v in properties.items() if k != "ACTION"}}
    props.setdefault("SEQNUM", str(next(_seqnum)))
    for key in ("DEVPATH", "SUBSYSTEM"):
        if key not in props:
            raise ValueError(f"a udev event needs {key}")
    message = build_message(props)
    # libudev's receive buffer is 8 KiB and it drops truncated datagrams.
    if len(message) > 8192:
        raise ValueError(f"udev message of {len(message)} bytes exceeds libudev's 8192-byte buffer")
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT) as sock:
        sock.bind((0, 0))
        try:
            # Port id 0 with a group: the kernel multicasts to the group's members; the copy it also
            # unicasts to itself is ignored because it does not parse as a netlink message.
            sock.sendto(message, (0, UDEV_GROUP))
        except ConnectionRefusedError:
            # udevd's own sender treats ECONNREFUSED on a multicast send as delivered.
            pass
        except PermissionError as exc:
            raise PermissionError(errno.EPERM, "sending to the udev netlink group needs root (CAP_NET_ADMIN)") from exc


def fake_camera_properties(
    node: str = "/dev/video7",
    serial: str = "046d_Logitech_BRIO_1A2B3C4D",
    id_path: str = "pci-0000:00:14.0-usb-0:2:1.0",
    vendor: str = "046d",
    product: str = "085e",
    *,
    model: str = "Logitech_BRIO",
    metadata: bool = False,
    extra_links: tuple[str, ...] = (),
) -> dict[str, str]:
    """Realistic udev properties of a UVC camera's video4linux node (a capture node unless `metadata`)."""
    number = int(m[1]) if (m := re.search(r"(\d+)$", node)) else 0
    index = 1 if metadata else 0
    serial_short = serial.rsplit("_", 1)[-1] if "_" in serial else serial
    port = id_path.rsplit("-usb-", 1)[-1].split(":")  # e.g. ["0", "2", "1.0"]: bus-relative port and interface
    usb_dir = f"1-{port[1]}" if len(port) >= 2 else "1-1"
    links = [
        f"/dev/v4l/by-id/usb-{serial}-video-index{index}",
        f"/dev/v4l/by-path/{id_path}-video-index{index}",
        *extra_links,
    ]
    return {
        "DEVPATH": f"/devices/pci0000:00/0000:00:14.0/usb1/{usb_dir}/{usb_dir}:1.0/video4linux/video{number}",
        "SUBSYSTEM": "video4linux",
        "DEVNAME": node,
        "MAJOR": "81",
        "MINOR": str(number),
        "ID_BUS": "usb",
        "ID_MODEL": model,
        "ID_MODEL_ENC": model.replace("_", "\\x20"),
        "ID_MODEL_ID": product,
        "ID_VENDOR": model.split("_", 1)[0],
        "ID_VENDOR_ID": vendor,
        "ID_REVISION": "0317",
        "ID_SERIAL": serial,
        "ID_SERIAL_SHORT": serial_short,
        "ID_TYPE": "video",
        "ID_USB_INTERFACES": ":0e0100:0e0200:010100:010200:",
        "ID_USB_INTERFACE_NUM": "00",
        "ID_USB_DRIVER": "uvcvideo",
        "ID_PATH": id_path,
        "ID_PATH_TAG": re.sub(r"[^A-Za-z0-9]", "_", id_path),
        "ID_V4L_VERSION": "2",
        "ID_V4L_PRODUCT": model.replace("_", " "),
        # Metadata nodes have no capture capability; udev writes an empty capability list then.
        "ID_V4L_CAPABILITIES": ":" if metadata else ":capture:",
        "DEVLINKS": " ".join(links),
        "TAGS": ":uaccess:seat:",
        "CURRENT_TAGS": ":uaccess:seat:",
        "USEC_INITIALIZED": str(time.monotonic_ns() // 1000),
    }


@contextlib.contextmanager
def udev_control_present() -> Iterator[None]:
    """Make libudev believe udevd runs (it only joins the udev group then), undoing only what it created."""
    created_dir = not UDEV_CONTROL.parent.exists()
    created_file = False
    if created_dir:
        UDEV_CONTROL.parent.mkdir(parents=True, exist_ok=True)
    if not UDEV_CONTROL.exists():
        with contextlib.suppress(FileExistsError):
            UDEV_CONTROL.touch(exist_ok=False)
            created_file = True
    try:
        yield
    finally:
        if created_file:
            UDEV_CONTROL.unlink(missing_ok=True)
        if created_dir:
            with contextlib.suppress(OSError):
                UDEV_CONTROL.parent.rmdir()
