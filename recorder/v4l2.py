"""Detect V4L2 cameras with v4l2-ctl and turn its output into typed modes, JSON, advice and checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from recorder.input_formats import fourccs_for, input_format_name

ENV_V4L2_CTL = "CAMERA_RECORDER_V4L2_CTL"
DEFAULT_V4L2_CTL = "v4l2-ctl"
# v4l2-ctl answers in milliseconds; a wedged UVC firmware can block an ioctl for much longer.
DEFAULT_TIMEOUT = 5.0

# Stepwise sizes enumerate no intervals (v4l2-ctl only asks for discrete sizes), so a suggested
# configuration needs some rate; 30 is the common UVC/CSI default and the operator is told to check it.
FALLBACK_FRAMERATE = 30

# Two rates within 0.5% are the same mode: 29.97 asked for is 30.000 offered.
_FPS_RELATIVE_TOLERANCE = 0.005


def _on_grid(value: int, low: int, high: int, step: int) -> bool:
    """Return whether value is in [low, high] and a whole number of steps above low."""
    return low <= value <= high and (value - low) % max(step, 1) == 0


def _snap(value: int, low: int, high: int, step: int) -> int:
    """Return the grid point of [low, high] with the given step nearest to value."""
    step = max(step, 1)
    clamped = min(max(value, low), high)
    below = low + (clamped - low) // step * step
    above = below + step if below + step <= high else below
    return below if clamped - below <= above - clamped else above


@dataclass(frozen=True)
class FrameSize:
    """One discrete frame size and the frame rates a format offers at it."""

    width: int
    height: int
    # Distinct rates, highest first; empty when the driver enumerates none.
    fps: tuple[float, ...] = ()
    # (lowest, highest) fps of a stepwise/continuous interval; None when the rates are discrete.
    fps_range: tuple[float, float] | None = None

    @property
    def pixels(self) -> int:
        """Return the pixel count of this size."""
        return self.width * self.height


@dataclass(frozen=True)
class StepwiseSize:
    """A range of frame sizes on a step grid (a continuous range has step 1)."""

    min_width: int
    max_width: int
    step_width: int
    min_height: int
    max_height: int
    step_height: int
    fps: tuple[float, ...] = ()
    fps_range: tuple[float, float] | None = None

    @property
    def pixels(self) -> int:
        """Return the pixel count of the largest size in the range."""
        return self.max_width * self.max_height

    def contains(self, width: int, height: int) -> bool:
        """Return whether width x height lies in the range and on the step grid."""
        return _on_grid(width, self.min_width, self.max_width, self.step_width) and _on_grid(
            height, self.min_height, self.max_height, self.step_height
        )

    def nearest(self, width: int, height: int) -> tuple[int, int]:
        """Return the size in the range closest to width x height, axis by axis."""
        return (
            _snap(width, self.min_width, self.max_width, self.step_width),
            _snap(height, self.min_height, self.max_height, self.step_height),
        )


Size = FrameSize | StepwiseSize


@dataclass(frozen=True)
class PixelFormat:
    """One pixel format of a capture node with its frame sizes."""

    fourcc: str
    description: str
    sizes: tuple[Size, ...]
    # v4l2-ctl format flags such as "compressed" or "emulated".
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class V4L2Device:
    """One /dev/videoN node as v4l2-ctl (or sysfs, without v4l2-ctl) describes it."""

    path: str
    card: str
    driver: str
    bus_info: str
    capture: bool
    stable_paths: tuple[str, ...]
    formats: tuple[PixelFormat, ...]
    # Why the node could not be fully queried; None when every query succeeded.
    error: str | None = None
    # The node's own capabilities ("Device Caps"); empty when unknown.
    caps: tuple[str, ...] = ()

    @property
    def metadata(self) -> bool:
        """Return whether this is a metadata node (for example the UVC payload-header node)."""
        return "Metadata Capture" in self.caps


# Runs one argv with a timeout (seconds); subprocess.run's contract, injectable for tests.
Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess[str]]


class _Mode(NamedTuple):
    """One concrete recording mode: a format at a size and rate."""

    fourcc: str
    width: int
    height: int
    fps: float | None


# --- configuration --------------------------------------------------------------------------------


def resolve_v4l2_ctl(configured: str | None) -> str:
    """Return the v4l2-ctl program to run: env CAMERA_RECORDER_V4L2_CTL, then config, then "v4l2-ctl"."""
    from_env = os.environ.get(ENV_V4L2_CTL, "").strip()
    if from_env:
        return from_env
    if configured and configured.strip():
        return configured.strip()
    return DEFAULT_V4L2_CTL


# --- parsing --------------------------------------------------------------------------------------

_CARD_BUS_RE = re.compile(r"^(?P<card>.*?)\s*\((?P<bus>[^()]*)\)$")


def parse_list_devices(text: str) -> list[tuple[str, list[str]]]:
    """Parse `v4l2-ctl --list-devices` into (card header without its colon, node paths) pairs."""
    groups: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("/dev/"):
            if groups:
                groups[-1][1].append(line)
        elif line.endswith(":"):
            # Indentation is no guide: pasted listings indent headers too, so a header is any
            # line ending in ":"; error lines ("Failed to open /dev/video0: No such file ...") don't.
            groups.append((line[:-1].rstrip(), []))
    return groups


def split_card_header(header: str) -> tuple[str, str]:
    """Split a --list-devices header "Card name (bus-info)" into (card, bus_info)."""
    match = _CARD_BUS_RE.match(header.strip())
    if match is None:
        return header.strip(), ""
    return match.group("card").strip(), match.group("bus").strip()


_KEY_VALUE_RE = re.compile(r"^(?P<key>[A-Za-z][A-Za-z /]*?)\s*:\s?(?P<value>.*)$")
_CAPTURE_CAPS = frozenset({"Video Capture", "Video Capture Multiplanar"})


def parse_info(text: str) -> dict[str, Any]:
    """Parse `v4l2-ctl --info`/`--all` into driver, card, bus_info, capture, metadata and caps."""
    fields: dict[str, str] = {}
    cap_lists: dict[str, list[str]] = {}
    collecting: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if collecting is not None and ":" not in line:
            cap_lists[collecting].append(line)
            continue
        collecting = None
        match = _KEY_VALUE_RE.match(line)
        if match is None:
            continue
        key, value = match.group("key"), match.group("value").strip()
        if key in ("Driver name", "Card type", "Bus info"):
            # The first block wins: "Media Driver Info" repeats these keys further down.
            fields.setdefault(key, value)
        elif key in ("Capabilities", "Device Caps") and value.startswith("0x") and key not in cap_lists:
            # Only the hex form opens a list; "Capabilities : timeperframe" is a streaming parameter.
            cap_lists[key] = []
            collecting = key
    # Device Caps describe this node; Capabilities describe the whole device, so they are only a
    # fallback for very old kernels that print no Device Caps.
    caps = cap_lists.get("Device Caps", cap_lists.get("Capabilities", []))
    return {
        "driver": fields.get("Driver name", ""),
        "card": fields.get("Card type", ""),
        "bus_info": fields.get("Bus info", ""),
        "capture": any(cap in _CAPTURE_CAPS for cap in caps),
        "metadata": "Metadata Capture" in caps,
        "caps": caps,
    }


_ENUM_FMT_MARKER = "ioctl: VIDIOC_ENUM_FMT"
_NEW_FORMAT_RE = re.compile(r"^\[\d+\]:\s*'(?P<fourcc>[^']*)'\s*(?:\((?P<desc>.*)\))?$")
_OLD_INDEX_RE = re.compile(r"^Index\s*:\s*\d+$")
_TYPE_RE = re.compile(r"^Type\s*:\s*(?P<type>.+)$")
_OLD_PIXFMT_RE = re.compile(r"^Pixel Format\s*:\s*'(?P<fourcc>[^']*)'\s*(?:\((?P<flags>.*)\))?$")
_OLD_NAME_RE = re.compile(r"^Name\s*:\s*(?P<name>.*)$")
_SIZE_DISCRETE_RE = re.compile(r"^Size:\s*Discrete\s+(\d+)x(\d+)")
_SIZE_RANGE_RE = re.compile(
    r"^Size:\s*(?P<kind>Stepwise|Continuous)\s+(\d+)x(\d+)\s*-\s*(\d+)x(\d+)(?:\s+with step\s+(\d+)/(\d+))?"
)
_INTERVAL_DISCRETE_RE = re.compile(r"^Interval:\s*Discrete\s+(?P<sec>[\d.]+)\s*s(?:\s*\((?P<fps>[\d.]+)\s*fps\))?")
_INTERVAL_RANGE_RE = re.compile(
    r"^Interval:\s*(?:Stepwise|Continuous)\s+(?P<min_sec>[\d.]+)\s*s\s*-\s*(?P<max_sec>[\d.]+)\s*s"
    r"(?:\s+with step\s+[\d.]+\s*s)?(?:\s*\((?P<low>[\d.]+)\s*-\s*(?P<high>[\d.]+)\s*fps\))?"
)
# Flags v4l2-ctl appends to a new-style description ("Motion-JPEG, compressed").
_FORMAT_FLAGS = frozenset(
    {
        "compressed",
        "emulated",
        "continuous-bytestream",
        "dyn-resolution",
        "enc-cap-frame-interval",
        "csc-colorspace",
        "csc-ycbcr-enc",
        "csc-hsv-enc",
        "csc-quantization",
        "csc-xfer-func",
        "meta-line-based",
    }
)


class _SizeBuilder:
    """Accumulates one size's intervals while the listing is read."""

    def __init__(self, size: tuple[int, ...]) -> None:
        # (w, h) for a discrete size, the six stepwise numbers otherwise.
        self.size = size
        self.rates: list[float] = []
        self.fps_range: tuple[float, float] | None = None

    def add_rate(self, fps: float) -> None:
        rate = round(fps, 3)
        if rate > 0 and rate not in self.rates:
            self.rates.append(rate)

    def add_range(self, low: float, high: float) -> None:
        low, high = round(low, 3), round(high, 3)
        if self.fps_range is not None:
            low, high = min(low, self.fps_range[0]), max(high, self.fps_range[1])
        self.fps_range = (low, high)
        self.add_rate(high)
        self.add_rate(low)

    def build(self) -> Size:
        fps = tuple(sorted(self.rates, reverse=True))
        if len(self.size) == 2:
            return FrameSize(self.size[0], self.size[1], fps, self.fps_range)
        return StepwiseSize(*self.size, fps=fps, fps_range=self.fps_range)


class _FormatBuilder:
    """Accumulates one pixel format while the listing is read."""

    def __init__(self, fourcc: str, description: str, flags: tuple[str, ...]) -> None:
        self.fourcc = fourcc
        self.description = description
        self.flags = flags
        # Keyed by size so a camera that lists a size twice yields one entry with merged rates.
        self.sizes: dict[tuple[int, ...], _SizeBuilder] = {}

    def size(self, key: tuple[int, ...]) -> _SizeBuilder:
        return self.sizes.setdefault(key, _SizeBuilder(key))

    def build(self) -> PixelFormat:
        return PixelFormat(
            fourcc=self.fourcc.rstrip(),
            description=self.description,
            sizes=tuple(builder.build() for builder in self.sizes.values()),
            flags=self.flags,
        )


def _split_description(text: str) -> tuple[str, tuple[str, ...]]:
    """Split "Motion-JPEG, compressed" into ("Motion-JPEG", ("compressed",))."""
    description, flags = text.strip(), []
    while ", " in description:
        head, _, tail = description.rpartition(", ")
        if tail not in _FORMAT_FLAGS:
            break
        flags.insert(0, tail)
        description = head
    return description, tuple(flags)


def _seconds_to_fps(seconds: str) -> float:
    value = float(seconds)
    return 1.0 / value if value > 0 else 0.0


def parse_formats(text: str) -> tuple[PixelFormat, ...]:
    """Parse `v4l2-ctl --list-formats-ext` output, old (Index/Pixel Format) or new ([N]: 'FCC') style."""
    start = text.find(_ENUM_FMT_MARKER)
    # Combined invocations (-D/--all with --list-formats-ext) print an info block first whose
    # "Pixel Format" line is the current format, not an offered one.
    body = text[start + len(_ENUM_FMT_MARKER) :] if start >= 0 else text
    formats: list[_FormatBuilder] = []
    current: _FormatBuilder | None = None
    size: _SizeBuilder | None = None
    capture_type = True
    for raw in body.splitlines():
        line = raw.strip()
        if not line:
            continue
        if match := _NEW_FORMAT_RE.match(line):
            description, flags = _split_description(match.group("desc") or "")
            current, size = None, None
            if capture_type:
                current = _FormatBuilder(match.group("fourcc"), description, flags)
                formats.append(current)
        elif _OLD_INDEX_RE.match(line):
            current, size = None, None
        elif match := _TYPE_RE.match(line):
            capture_type = "Capture" in match.group("type")
        elif match := _OLD_PIXFMT_RE.match(line):
            flags = tuple(f.strip() for f in (match.group("flags") or "").split(",") if f.strip())
            current, size = None, None
            if capture_type:
                current = _FormatBuilder(match.group("fourcc"), "", flags)
                formats.append(current)
        elif (match := _OLD_NAME_RE.match(line)) and current is not None and not current.sizes:
            current.description = match.group("name").strip()
        elif current is None:
            continue
        elif match := _SIZE_DISCRETE_RE.match(line):
            size = current.size((int(match.group(1)), int(match.group(2))))
        elif match := _SIZE_RANGE_RE.match(line):
            min_w, min_h, max_w, max_h = (int(match.group(i)) for i in range(2, 6))
            step_w, step_h = int(match.group(6) or 1), int(match.group(7) or 1)
            size = current.size((min_w, max_w, step_w, min_h, max_h, step_h))
        elif line.startswith("Size:"):
            # Older v4l2-ctl prints a bare "Size: Continuous" without bounds: nothing to record.
            size = None
        elif size is None:
            continue
        elif match := _INTERVAL_DISCRETE_RE.match(line):
            size.add_rate(float(match.group("fps")) if match.group("fps") else _seconds_to_fps(match.group("sec")))
        elif match := _INTERVAL_RANGE_RE.match(line):
            if match.group("low") and match.group("high"):
                size.add_range(float(match.group("low")), float(match.group("high")))
            else:
                size.add_range(_seconds_to_fps(match.group("max_sec")), _seconds_to_fps(match.group("min_sec")))
    return tuple(builder.build() for builder in formats)


# --- device paths ---------------------------------------------------------------------------------


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
    if not info["driver"] and not info["caps"]:
        return V4L2Device(node, card, "", bus_info, False, links, (), error="v4l2-ctl printed no driver info")
    card = info["card"] or card
    bus_info = info["bus_info"] or bus_info
    caps = tuple(info["caps"])
    if not info["capture"]:
        # Metadata and output nodes offer no video capture formats; asking would only list none.
        return V4L2Device(node, card, info["driver"], bus_info, False, links, (), caps=caps)
    formats_text, error = _query(run, v4l2_ctl, ["-d", node, "--list-formats-ext"], timeout)
    formats = parse_formats(formats_text) if formats_text is not None else ()
    return V4L2Device(node, card, info["driver"], bus_info, True, links, formats, error=error, caps=caps)


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


# --- JSON -----------------------------------------------------------------------------------------


def _fps_json(size: Size) -> dict[str, Any]:
    out: dict[str, Any] = {"fps": [round(rate, 3) for rate in size.fps]}
    if size.fps_range is not None:
        out["fps_range"] = {"min": round(size.fps_range[0], 3), "max": round(size.fps_range[1], 3)}
    return out


def _size_json(size: Size) -> dict[str, Any]:
    if isinstance(size, FrameSize):
        return {"width": size.width, "height": size.height, **_fps_json(size)}
    return {
        "stepwise": {
            "min_width": size.min_width,
            "max_width": size.max_width,
            "step_width": size.step_width,
            "min_height": size.min_height,
            "max_height": size.max_height,
            "step_height": size.step_height,
        },
        **_fps_json(size),
    }


def devices_to_json(devices: Iterable[V4L2Device]) -> dict[str, Any]:
    """Return the `--detect --json` document for devices."""
    return {
        "devices": [
            {
                "path": device.path,
                "card": device.card,
                "driver": device.driver,
                "bus_info": device.bus_info,
                "capture": device.capture,
                "metadata": device.metadata,
                "stable_paths": list(device.stable_paths),
                "formats": [
                    {
                        "fourcc": fmt.fourcc,
                        "description": fmt.description,
                        "flags": list(fmt.flags),
                        "sizes": [_size_json(size) for size in fmt.sizes],
                    }
                    for fmt in device.formats
                ],
                "error": device.error,
            }
            for device in devices
        ]
    }


# --- recommendation and validation ----------------------------------------------------------------

# Stream copy of the camera's own H.264 costs no CPU; MJPEG is next best for size per USB bandwidth.
_FORMAT_PREFERENCE = {"H264": 0, "MJPG": 1}


def _format_rank(fmt: PixelFormat, index: int) -> tuple[int, int]:
    return (_FORMAT_PREFERENCE.get(fmt.fourcc, len(_FORMAT_PREFERENCE)), index)


def _largest_mode(fmt: PixelFormat) -> _Mode | None:
    """Return the format's largest size (sizes with known rates first) at its highest rate."""
    if not fmt.sizes:
        return None
    # max() keeps the first of equals, so ties (3840x2160 vs 2880x2880) follow the driver's order.
    size = max(fmt.sizes, key=lambda s: (bool(s.fps), s.pixels, max(s.fps, default=0.0)))
    width, height = (size.width, size.height) if isinstance(size, FrameSize) else (size.max_width, size.max_height)
    return _Mode(fmt.fourcc, width, height, max(size.fps) if size.fps else None)


def _best_mode(device: V4L2Device) -> tuple[tuple[int, int], _Mode] | None:
    """Return (format rank, mode) of the mode to record from device, or None if it offers none."""
    if not device.capture:
        return None
    ranked = sorted(
        (_format_rank(fmt, index), mode)
        for index, fmt in enumerate(device.formats)
        if (mode := _largest_mode(fmt)) is not None
    )
    return ranked[0] if ranked else None


def _preferred_path(device: V4L2Device) -> str:
    # by-id names follow the camera across ports; by-path names follow the port, so only by-id beats the node.
    return next((path for path in device.stable_paths if "/by-id/" in path), device.path)


def _mode_to_block(device: V4L2Device, mode: _Mode) -> dict[str, Any]:
    return {
        "device": _preferred_path(device),
        "name": device.card,
        "input_format": input_format_name(mode.fourcc),
        "resolution": f"{mode.width}x{mode.height}",
        "framerate": round(mode.fps) if mode.fps is not None else FALLBACK_FRAMERATE,
    }


def recommend(device: V4L2Device) -> dict[str, Any] | None:
    """Return the suggested `cameras:` entry for device: H264, else MJPG, else any; largest size; top rate."""
    best = _best_mode(device)
    return _mode_to_block(device, best[1]) if best is not None else None


def _choose_for_camera(group: Sequence[V4L2Device]) -> tuple[V4L2Device, _Mode] | None:
    """Return the node and mode to record one physical camera from, choosing among its capture nodes."""
    candidates = []
    for order, device in enumerate(group):
        best = _best_mode(device)
        if best is not None:
            (preference, _), mode = best
            key = (preference, -mode.width * mode.height, -(mode.fps or 0.0), order)
            candidates.append((key, device, mode))
    if not candidates:
        return None
    _, device, mode = min(candidates, key=lambda item: item[0])
    return device, mode


def _fps_text(fps: float) -> str:
    return f"{fps:.3f}".rstrip("0").rstrip(".")


def _rate_matches(offered: float, wanted: float) -> bool:
    return abs(offered - wanted) <= _FPS_RELATIVE_TOLERANCE * max(offered, wanted)


def _fps_supported(size: Size, fps: float) -> bool:
    if not size.fps and size.fps_range is None:
        # No intervals enumerated (stepwise sizes): the driver picks the nearest rate itself.
        return True
    if size.fps_range is not None:
        low, high = size.fps_range
        if low <= fps <= high or _rate_matches(low, fps) or _rate_matches(high, fps):
            return True
    return any(_rate_matches(rate, fps) for rate in size.fps)


def _size_supported(size: Size, width: int, height: int) -> bool:
    if isinstance(size, FrameSize):
        return (size.width, size.height) == (width, height)
    return size.contains(width, height)


def _nearest_on(fmt: PixelFormat, size: Size, width: int, height: int, fps: float) -> tuple[float, float, _Mode]:
    """Return (pixel distance, fps distance, mode) of the mode on size nearest the request."""
    near_w, near_h = (size.width, size.height) if isinstance(size, FrameSize) else size.nearest(width, height)
    if size.fps_range is not None:
        rate = min(max(fps, size.fps_range[0]), size.fps_range[1])
    elif size.fps:
        # Ties go to the higher rate: a camera can always be throttled later, not sped up.
        rate = min(size.fps, key=lambda r: (abs(r - fps), -r))
    else:
        # No rates listed means the driver takes any rate (see _fps_supported).
        rate = fps
    return abs(near_w * near_h - width * height), abs(rate - fps), _Mode(fmt.fourcc, near_w, near_h, rate)


def check_mode(device: V4L2Device, input_format: str | None, width: int, height: int, fps: float) -> str | None:
    """Return None if device offers the mode, else one line naming the gap and the nearest offered mode."""
    wanted = f"{width}x{height}@{_fps_text(fps)}" + (f" {input_format}" if input_format else "")
    where = f"{device.path} ({device.card})" if device.card else device.path
    usable = [fmt for fmt in device.formats if fmt.sizes]
    if not usable:
        return f"{wanted} not offered by {where}: it lists no video capture formats"
    fourccs = fourccs_for(input_format) if input_format else None
    same_format = [fmt for fmt in usable if fourccs is None or fmt.fourcc in fourccs]
    for fmt in same_format:
        for size in fmt.sizes:
            if _size_supported(size, width, height) and _fps_supported(size, fps):
                return None
    pool = same_format or usable
    candidates = []
    for index, fmt in enumerate(usable):
        if fmt not in pool:
            continue
        for size in fmt.sizes:
            pixel_distance, fps_distance, near = _nearest_on(fmt, size, width, height, fps)
            candidates.append(((pixel_distance, fps_distance, _format_rank(fmt, index)), near))
    _, mode = min(candidates, key=lambda item: item[0])
    rate = _fps_text(mode.fps if mode.fps is not None else fps)
    gap = "" if same_format else f" (no {input_format} format)"
    return (
        f"{wanted} not offered by {where}{gap}; "
        f"nearest: {mode.width}x{mode.height}@{rate} {input_format_name(mode.fourcc)}"
    )


# --- human output ---------------------------------------------------------------------------------


def _group_by_camera(devices: Sequence[V4L2Device]) -> list[list[V4L2Device]]:
    """Group nodes by bus_info so a camera's capture and metadata nodes stay together."""
    groups: dict[str, list[V4L2Device]] = {}
    for device in devices:
        groups.setdefault(device.bus_info or device.path, []).append(device)
    return list(groups.values())


def _size_text(size: Size) -> str:
    if isinstance(size, FrameSize):
        return f"{size.width}x{size.height}"
    return (
        f"{size.min_width}x{size.min_height} - {size.max_width}x{size.max_height} "
        f"step {size.step_width}/{size.step_height}"
    )


def _rates_text(size: Size) -> str:
    if size.fps_range is not None:
        return f"{_fps_text(size.fps_range[0])}-{_fps_text(size.fps_range[1])} fps"
    if size.fps:
        return "/".join(_fps_text(rate) for rate in size.fps) + " fps"
    return "rates not listed"


def _render_format(fmt: PixelFormat) -> list[str]:
    title = f"    {fmt.fourcc}" + (f" ({fmt.description})" if fmt.description else "")
    if not fmt.sizes:
        return [f"{title}: no sizes listed"]
    lines = [title + ":"]
    # Sizes sharing one rate list print on one line, largest first, to keep 20-size webcams short.
    runs: list[tuple[str, list[str]]] = []
    for size in sorted(fmt.sizes, key=lambda s: s.pixels, reverse=True):
        rates = _rates_text(size)
        if runs and runs[-1][0] == rates:
            runs[-1][1].append(_size_text(size))
        else:
            runs.append((rates, [_size_text(size)]))
    lines.extend(f"      {', '.join(sizes)} @ {rates}" for rates, sizes in runs)
    return lines


def _render_camera(number: int, group: Sequence[V4L2Device]) -> list[str]:
    card = next((device.card for device in group if device.card), "unknown camera")
    driver = next((device.driver for device in group if device.driver), "")
    bus = group[0].bus_info or "unknown bus"
    lines = [f"Camera {number}: {card}", f"  bus: {bus}" + (f", driver: {driver}" if driver else "")]
    for device in group:
        if device.capture:
            lines.append(f"  capture node: {device.path}")
        elif device.metadata:
            lines.append(f"  metadata node: {device.path}")
        elif device.error:
            lines.append(f"  node: {device.path}")
        else:
            lines.append(f"  other node: {device.path} ({', '.join(device.caps) or 'no capabilities'})")
        lines.extend(f"    stable: {path}" for path in device.stable_paths)
        if device.error:
            lines.append(f"    error: {device.error}")
        for fmt in device.formats:
            lines.extend(_render_format(fmt))
    return lines


_YAML_PLAIN_RE = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_YAML_RESERVED = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n"})


def _yaml_scalar(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if _YAML_PLAIN_RE.match(text) and text.lower() not in _YAML_RESERVED:
        return text
    # A JSON string is a valid YAML double-quoted scalar, escapes included.
    return json.dumps(text, ensure_ascii=False)


def render_human(devices: Sequence[V4L2Device]) -> str:
    """Return the `--detect` report: one block per physical camera, then a ready-to-paste `cameras:` block."""
    if not devices:
        return "No V4L2 video devices found.\n"
    cameras: list[list[V4L2Device]] = []
    others: list[list[V4L2Device]] = []
    for group in _group_by_camera(devices):
        (cameras if any(device.capture or device.error for device in group) else others).append(group)
    lines: list[str] = []
    for number, group in enumerate(cameras, start=1):
        lines.extend(_render_camera(number, group))
        lines.append("")
    if others:
        lines.append("Other V4L2 devices (no video capture node):")
        for group in others:
            name = next((device.card for device in group if device.card), "unknown")
            lines.append(f"  {name} [{group[0].bus_info}]: {', '.join(device.path for device in group)}")
        lines.append("")
    chosen = [choice for group in cameras if (choice := _choose_for_camera(group)) is not None]
    lines.append("# Suggested configuration: the best recording mode of each camera (check it before use).")
    if not chosen:
        lines.append("cameras: {}  # no camera offers a recordable video format")
        return "\n".join(lines) + "\n"
    lines.append("cameras:")
    for number, (device, mode) in enumerate(chosen, start=1):
        block = _mode_to_block(device, mode)
        if mode.fps is None:
            lines.append(f"  # {device.path}: the driver lists no frame rates, {FALLBACK_FRAMERATE} is a guess")
        lines.append(f"  cam{number}:")
        lines.extend(f"    {key}: {_yaml_scalar(value)}" for key, value in block.items())
    return "\n".join(lines) + "\n"
