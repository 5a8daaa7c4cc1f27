"""Parse what v4l2-ctl prints (--list-devices, --info/--all, --list-formats-ext) into the model's types."""

from __future__ import annotations

import re

from recorder.devices.v4l2.model import DeviceInfo, FrameSize, PixelFormat, Size, StepwiseSize

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


def parse_info(text: str) -> DeviceInfo:
    """Parse `v4l2-ctl --info`/`--all` into the node's driver, card, bus info and capabilities."""
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
    return DeviceInfo(
        driver=fields.get("Driver name", ""),
        card=fields.get("Card type", ""),
        bus_info=fields.get("Bus info", ""),
        caps=tuple(caps),
    )


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
