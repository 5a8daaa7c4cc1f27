"""Choose the mode to record a camera in, and check a configured mode against what a device offers."""

from __future__ import annotations

from collections.abc import Sequence

from recorder.devices.v4l2.model import FrameSize, Mode, PixelFormat, Size, V4L2Device
from recorder.domain.input_formats import fourccs_for, input_format_name

# Stepwise sizes enumerate no intervals (v4l2-ctl only asks for discrete sizes), so a suggested
# configuration needs some rate; 30 is the common UVC/CSI default and the operator is told to check it.
FALLBACK_FRAMERATE = 30

# Two rates within 0.5% are the same mode: 29.97 asked for is 30.000 offered.
_FPS_RELATIVE_TOLERANCE = 0.005

# Stream copy of the camera's own H.264 costs no CPU; MJPEG is next best for size per USB bandwidth.
_FORMAT_PREFERENCE = {"H264": 0, "MJPG": 1}


def _format_rank(fmt: PixelFormat, index: int) -> tuple[int, int]:
    return (_FORMAT_PREFERENCE.get(fmt.fourcc, len(_FORMAT_PREFERENCE)), index)


def _largest_mode(fmt: PixelFormat) -> Mode | None:
    """Return the format's largest size (sizes with known rates first) at its highest rate."""
    if not fmt.sizes:
        return None
    # max() keeps the first of equals, so ties (3840x2160 vs 2880x2880) follow the driver's order.
    size = max(fmt.sizes, key=lambda s: (bool(s.fps), s.pixels, max(s.fps, default=0.0)))
    width, height = (size.width, size.height) if isinstance(size, FrameSize) else (size.max_width, size.max_height)
    return Mode(fmt.fourcc, width, height, max(size.fps) if size.fps else None)


def _best_mode(device: V4L2Device) -> tuple[tuple[int, int], Mode] | None:
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


def camera_block(device: V4L2Device, mode: Mode) -> dict[str, str | int]:
    """Return the `cameras:` entry that records device in mode (the fallback rate when none is listed)."""
    return {
        "device": _preferred_path(device),
        "name": device.card,
        "input_format": input_format_name(mode.fourcc),
        "resolution": f"{mode.width}x{mode.height}",
        "framerate": round(mode.fps) if mode.fps is not None else FALLBACK_FRAMERATE,
    }


def recommend(device: V4L2Device) -> dict[str, str | int] | None:
    """Return the suggested `cameras:` entry for device: H264, else MJPG, else any; largest size; top rate."""
    best = _best_mode(device)
    return camera_block(device, best[1]) if best is not None else None


def choose_for_camera(group: Sequence[V4L2Device]) -> tuple[V4L2Device, Mode] | None:
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


def fps_text(fps: float) -> str:
    """Return fps with at most three decimals and no trailing zeros ("30", "29.97")."""
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


def _nearest_on(fmt: PixelFormat, size: Size, width: int, height: int, fps: float) -> tuple[float, float, Mode]:
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
    return abs(near_w * near_h - width * height), abs(rate - fps), Mode(fmt.fourcc, near_w, near_h, rate)


def check_mode(device: V4L2Device, input_format: str | None, width: int, height: int, fps: float) -> str | None:
    """Return None if device offers the mode, else one line naming the gap and the nearest offered mode."""
    wanted = f"{width}x{height}@{fps_text(fps)}" + (f" {input_format}" if input_format else "")
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
    rate = fps_text(mode.fps if mode.fps is not None else fps)
    gap = "" if same_format else f" (no {input_format} format)"
    return (
        f"{wanted} not offered by {where}{gap}; "
        f"nearest: {mode.width}x{mode.height}@{rate} {input_format_name(mode.fourcc)}"
    )
