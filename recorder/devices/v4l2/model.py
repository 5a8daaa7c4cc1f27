"""The shapes detection works in: frame sizes, pixel formats, a device's --info and one probed node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


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


# Capabilities that make a node one we can record video from.
CAPTURE_CAPS = frozenset({"Video Capture", "Video Capture Multiplanar"})


@dataclass(frozen=True)
class DeviceInfo:
    """What `v4l2-ctl --info` (or `--all`) says about one node."""

    driver: str = ""
    card: str = ""
    bus_info: str = ""
    # The node's own "Device Caps" (the device's "Capabilities" on kernels too old to print them).
    caps: tuple[str, ...] = ()

    @property
    def capture(self) -> bool:
        """Return whether the node captures video."""
        return any(cap in CAPTURE_CAPS for cap in self.caps)

    @property
    def metadata(self) -> bool:
        """Return whether this is a metadata node (for example the UVC payload-header node)."""
        return "Metadata Capture" in self.caps


class Mode(NamedTuple):
    """One concrete recording mode: a format at a size and rate (None: the driver lists no rates)."""

    fourcc: str
    width: int
    height: int
    fps: float | None
