"""The one table of camera input formats: the config's name, FFmpeg's -input_format and the V4L2 fourccs.

config/ validates `input_format` against it, presets.py builds FFmpeg's argv from it and the v4l2 package
matches and names what a device offers with it, so the three can no longer disagree.
"""

from __future__ import annotations

from typing import NamedTuple


class InputFormat(NamedTuple):
    """One format a camera can deliver."""

    name: str  # what `input_format` in the config says
    ffmpeg: str  # FFmpeg's v4l2 -input_format value
    fourccs: tuple[str, ...]  # the V4L2 pixel formats it selects; the first is what the device lists


INPUT_FORMATS: tuple[InputFormat, ...] = (
    InputFormat("h264", "h264", ("H264",)),
    InputFormat("hevc", "hevc", ("HEVC",)),
    InputFormat("mjpeg", "mjpeg", ("MJPG", "JPEG")),  # FFmpeg's mjpeg selects both
    InputFormat("yuyv", "yuyv422", ("YUYV",)),
    InputFormat("nv12", "nv12", ("NV12",)),
    InputFormat("rgb24", "rgb24", ("RGB3",)),
    InputFormat("gray", "gray", ("GREY",)),
)
INPUT_FORMAT_NAMES: tuple[str, ...] = tuple(fmt.name for fmt in INPUT_FORMATS)

# Other spellings operators and FFmpeg use for the same fourccs, accepted where a device is matched.
_ALIASES: dict[str, tuple[str, ...]] = {
    "h265": ("HEVC",),
    "mjpg": ("MJPG",),
    "jpeg": ("JPEG",),
    "yuyv422": ("YUYV",),
    "yuy2": ("YUYV",),
    "uyvy": ("UYVY",),
    "uyvy422": ("UYVY",),
    "nv21": ("NV21",),
    "yuv420p": ("YU12",),
    "yu12": ("YU12",),
    "bgr24": ("BGR3",),
    "grey": ("GREY",),
}
_FOURCCS_OF: dict[str, tuple[str, ...]] = {fmt.name: fmt.fourccs for fmt in INPUT_FORMATS} | _ALIASES
_NAME_OF_FOURCC: dict[str, str] = {fmt.fourccs[0]: fmt.name for fmt in INPUT_FORMATS}
FFMPEG_INPUT_FORMAT: dict[str, str] = {fmt.name: fmt.ffmpeg for fmt in INPUT_FORMATS}


def input_format_name(fourcc: str) -> str:
    """The config `input_format` name for a fourcc ("h264", "mjpeg", "yuyv", ...; else the fourcc in lower case)."""
    return _NAME_OF_FOURCC.get(fourcc, fourcc.lower())


def fourccs_for(input_format: str) -> tuple[str, ...]:
    """The fourccs an `input_format` name selects (an unknown name is taken as a fourcc)."""
    name = input_format.strip().lower()
    return _FOURCCS_OF.get(name, (name.upper(),))
