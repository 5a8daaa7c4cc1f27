"""`camera-recorder --export CAMERA --since TIME [--until TIME] -o clip.mp4`.

Without a running daemon's index at hand, the camera's folder is listed once; the few segments the clip
needs are probed for their exact duration. Prints what it wrote, in which zone the times were read, and
every gap the clip jumps over.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from recorder.config import Config
from recorder.export import ExportError, check_clip, write_clip
from recorder.ffmpeg_binary import find_tools
from recorder.recordings import TimeError, local_text, overlapping, parse_time, scan_folder

EXIT_OK, EXIT_PROBLEMS = 0, 1


def _warn(message: str) -> None:
    print(f"camera-recorder: --export: {message}", file=sys.stderr)


def _fail(message: str) -> int:
    _warn(message)
    return EXIT_PROBLEMS


def _both(ts: float) -> str:
    return f"{local_text(ts)} ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(ts))} UTC)"


def export_command(config: Config, camera: str, since: str, until: str | None, output: Path) -> int:
    known = [c.id for c in config.cameras]
    if camera not in known:
        return _fail(f"no camera {camera!r} in the config; cameras: {', '.join(known) or 'none'}")
    tools = find_tools(config.system)
    if tools.ffmpeg is None:
        return _fail("no FFmpeg found: install ffmpeg or set system.ffmpeg in the config")
    now = time.time()
    try:
        start, start_zone = parse_time(since, now)
        end, end_zone = parse_time(until, now) if until else (now, "now")
    except TimeError as exc:
        return _fail(str(exc))
    folder = config.recording.base_directory / camera
    segments = scan_folder(folder, camera, float(config.recording.segment_time))
    # Estimated durations decide which segments are needed; exact ones (ffprobe) where the cuts and gaps are.
    needed = overlapping(segments, start - config.recording.segment_time, end)
    try:
        clip = check_clip(camera, needed, start, end, tools.ffprobe or "ffprobe")
    except ExportError as exc:
        return _fail(str(exc))
    plan = clip.plan
    try:
        write_clip(plan, tools.ffmpeg, output, held=clip.held)
    except ExportError as exc:
        return _fail(str(exc))
    finally:
        clip.close()
    size = output.stat().st_size
    pieces = len(plan.pieces)
    print(f"wrote {output}: camera {camera}, {pieces} segment(s), {plan.recorded_seconds:.1f} s, {size} bytes")
    print(f"  asked from {_both(start)} [read as {start_zone}]")
    print(f"          to {_both(end)} [read as {end_zone}]")
    print("  cut at the nearest keyframes (stream copy): the clip may start a little before the asked time")
    for gap in plan.gaps:
        print(f"  gap: nothing recorded from {_both(gap.start)} to {_both(gap.end)} ({gap.seconds:.0f} s); skipped")
    if not plan.gaps:
        print("  no gaps: the clip is continuous")
    for seg in clip.unreadable:
        _warn(f"{seg.path.name} is gone or unreadable: its time is a gap")
    for seg in clip.shortened:
        _warn(f"{seg.path.name} holds less than recorded: the rest is a gap")
    return EXIT_PROBLEMS if clip.damaged else EXIT_OK
