"""Render detected devices for people (`--detect`, ending in a `cameras:` block) and programs (`--json`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from recorder.devices.v4l2.model import FrameSize, Mode, PixelFormat, Size, V4L2Device
from recorder.devices.v4l2.modes import FALLBACK_FRAMERATE, camera_block, choose_for_camera, fps_text

# PyYAML folds long scalars at 80 columns; a folded device path is harder to read and to grep.
_NO_LINE_WRAP = 1 << 16


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
        return f"{fps_text(size.fps_range[0])}-{fps_text(size.fps_range[1])} fps"
    if size.fps:
        return "/".join(fps_text(rate) for rate in size.fps) + " fps"
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


def _cameras_yaml(chosen: Sequence[tuple[V4L2Device, Mode]]) -> list[str]:
    """Return the `cameras:` block for the chosen (node, mode) pairs, each entry dumped by yaml.safe_dump.

    Entries are dumped one at a time so a guessed frame rate can be flagged by a comment right above its
    entry (PyYAML writes no comments); indented under `cameras:` they form one mapping.
    """
    if not chosen:
        return [yaml.safe_dump({"cameras": {}}).rstrip("\n") + "  # no camera offers a recordable video format"]
    lines = ["cameras:"]
    for number, (device, mode) in enumerate(chosen, start=1):
        if mode.fps is None:
            lines.append(f"  # {device.path}: the driver lists no frame rates, {FALLBACK_FRAMERATE} is a guess")
        entry = yaml.safe_dump(
            {f"cam{number}": camera_block(device, mode)},
            sort_keys=False,  # the keys in the order a config file lists them
            allow_unicode=True,  # card names stay readable
            width=_NO_LINE_WRAP,
        )
        lines.extend(f"  {line}" for line in entry.splitlines())
    return lines


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
    chosen = [choice for group in cameras if (choice := choose_for_camera(group)) is not None]
    lines.append("# Suggested configuration: the best recording mode of each camera (check it before use).")
    lines.extend(_cameras_yaml(chosen))
    return "\n".join(lines) + "\n"
