"""Run v4l2-ctl (or read sysfs when it is missing) to find and describe the V4L2 video nodes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence

from recorder.devices.v4l2.model import V4L2Device
from recorder.devices.v4l2.parse import parse_formats, parse_info, parse_list_devices, split_card_header

ENV_V4L2_CTL = "CAMERA_RECORDER_V4L2_CTL"
DEFAULT_V4L2_CTL = "v4l2-ctl"
# v4l2-ctl answers in milliseconds; a wedged UVC firmware can block an ioctl for much longer.
DEFAULT_TIMEOUT = 5.0

# Runs one argv with a timeout (seconds); subprocess.run's contract, injectable for tests.
Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess[str]]


def resolve_v4l2_ctl(configured: str | None) -> str:
    """Return the v4l2-ctl program to run: env CAMERA_RECORDER_V4L2_CTL, then config, then "v4l2-ctl"."""
    from_env = os.environ.get(ENV_V4L2_CTL, "").strip()
    if from_env:
        return from_env
    if configured and configured.strip():
        return configured.strip()
    return DEFAULT_V4L2_CTL


def stable_paths(node: str, dev_root: str = "/dev") -> tuple[str, ...]:
    """Return the /dev/v4l/by-id then by-path symlinks (under dev_root) that point at node."""
    target = os.path.normpath(os.path.join(dev_root, os.path.basename(node)))
    found: list[str] = []
    for kind in ("by-id", "by-path"):
        folder = os.path.join(dev_root, "v4l", kind)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            if not entry.is_symlink():
                continue
            link = os.readlink(entry.path)
            resolved = os.path.normpath(os.path.join(folder, link))
            if resolved == target or os.path.realpath(entry.path) == os.path.realpath(target):
                found.append(entry.path)
    return tuple(found)


def _is_video_node(path: str) -> bool:
    return os.path.basename(path).startswith("video")


def _node_sort_key(name: str) -> tuple[str, int]:
    digits = name.lstrip("abcdefghijklmnopqrstuvwxyz")
    return (name[: len(name) - len(digits)], int(digits) if digits.isdigit() else -1)


# --- running v4l2-ctl -----------------------------------------------------------------------------


def _run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run one v4l2-ctl command and capture its text output."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        # C locale keeps "0.033s (30.000 fps)" free of decimal commas.
        env={**os.environ, "LC_ALL": "C"},
    )


def _failure(proc: subprocess.CompletedProcess[str]) -> str:
    for stream in (proc.stderr, proc.stdout):
        for line in stream.splitlines():
            if line.strip():
                return f"{line.strip()} (exit {proc.returncode})"
    return f"exit {proc.returncode}"


def _query(run: Runner, v4l2_ctl: str, args: Sequence[str], timeout: float) -> tuple[str | None, str | None]:
    """Run v4l2-ctl with args; return (stdout, None) on success or (None, error message)."""
    command = " ".join([os.path.basename(v4l2_ctl), *args])
    try:
        proc = run([v4l2_ctl, *args], timeout)
    except subprocess.TimeoutExpired:
        return None, f"{command} timed out after {timeout:g}s"
    except OSError as exc:
        return None, f"{command} could not run: {exc.strerror or exc}"
    if proc.returncode != 0:
        return None, f"{command}: {_failure(proc)}"
    return proc.stdout, None


def _probe_node(
    run: Runner, v4l2_ctl: str, node: str, card: str, bus_info: str, dev_root: str, timeout: float
) -> V4L2Device:
    """Query one node's driver info and, for a capture node, its formats."""
    links = stable_paths(node, dev_root)
    info_text, error = _query(run, v4l2_ctl, ["-d", node, "--info"], timeout)
    if info_text is None:
        return V4L2Device(node, card, "", bus_info, False, links, (), error=error)
    info = parse_info(info_text)
    if not info.driver and not info.caps:
        return V4L2Device(node, card, "", bus_info, False, links, (), error="v4l2-ctl printed no driver info")
    card = info.card or card
    bus_info = info.bus_info or bus_info
    if not info.capture:
        # Metadata and output nodes offer no video capture formats; asking would only list none.
        return V4L2Device(node, card, info.driver, bus_info, False, links, (), caps=info.caps)
    formats_text, error = _query(run, v4l2_ctl, ["-d", node, "--list-formats-ext"], timeout)
    formats = parse_formats(formats_text) if formats_text is not None else ()
    return V4L2Device(node, card, info.driver, bus_info, True, links, formats, error=error, caps=info.caps)


def probe(node: str, v4l2_ctl: str, *, dev_root: str = "/dev", timeout: float = DEFAULT_TIMEOUT) -> V4L2Device:
    """Describe one node (as --validate needs for a configured camera) without listing the others."""
    return _probe_node(_run, v4l2_ctl, node, "", "", dev_root, timeout)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _detect_from_sysfs(dev_root: str, sys_root: str, note: str) -> list[V4L2Device]:
    """List video nodes from sysfs (or dev_root) when v4l2-ctl cannot tell us about them."""
    class_dir = os.path.join(sys_root, "class", "video4linux")
    try:
        names = [name for name in os.listdir(class_dir) if name.startswith("video")]
    except OSError:
        try:
            names = [name for name in os.listdir(dev_root) if name.startswith("video")]
        except OSError:
            names = []
    devices: list[V4L2Device] = []
    for name in sorted(names, key=_node_sort_key):
        node_dir = os.path.join(class_dir, name)
        device_link = os.path.join(node_dir, "device")
        driver_link = os.path.join(device_link, "driver")
        driver = os.path.basename(os.path.realpath(driver_link)) if os.path.exists(driver_link) else ""
        bus_info = os.path.basename(os.path.realpath(device_link)) if os.path.exists(device_link) else ""
        path = os.path.join(dev_root, name)
        devices.append(
            V4L2Device(
                path=path,
                card=_read_text(os.path.join(node_dir, "name")),
                driver=driver,
                bus_info=bus_info,
                # Without VIDIOC_QUERYCAP only the index hints at the role: uvcvideo registers the
                # capture node as index 0 and its metadata node as index 1.
                capture=_read_text(os.path.join(node_dir, "index")) == "0",
                stable_paths=stable_paths(path, dev_root),
                formats=(),
                error=note,
            )
        )
    return devices


def detect(
    v4l2_ctl: str,
    dev_root: str = "/dev",
    sys_root: str = "/sys",
    *,
    timeout: float = DEFAULT_TIMEOUT,
    run: Runner | None = None,
) -> list[V4L2Device]:
    """Enumerate V4L2 video nodes with v4l2-ctl (sysfs when it is missing) and describe each one."""
    run = run or _run
    try:
        listing = run([v4l2_ctl, "--list-devices"], timeout)
    except OSError as exc:
        note = f"{v4l2_ctl} could not run ({exc.strerror or exc}); install v4l-utils to list formats"
        return _detect_from_sysfs(dev_root, sys_root, note)
    except subprocess.TimeoutExpired:
        note = f"{os.path.basename(v4l2_ctl)} --list-devices timed out after {timeout:g}s"
        return _detect_from_sysfs(dev_root, sys_root, note)
    # A non-zero exit still comes with the devices it could open (a stale node makes it fail).
    devices: list[V4L2Device] = []
    seen: set[str] = set()
    for header, nodes in parse_list_devices(listing.stdout):
        card, bus_info = split_card_header(header)
        for node in nodes:
            if _is_video_node(node) and node not in seen:
                seen.add(node)
                devices.append(_probe_node(run, v4l2_ctl, node, card, bus_info, dev_root, timeout))
    return devices
