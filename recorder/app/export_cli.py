"""`camera-recorder --export CAMERA --since TIME [--until TIME] -o clip.mp4`.

Without a running daemon's index at hand, the camera's folder is listed once; the few segments the clip
needs are probed for their exact duration. While FFmpeg copies, its own -progress says how far it is (a bar
on a terminal, plain lines otherwise). Then prints what it wrote (the clip's duration as ffprobe reads it,
its size, how long it took), in which zone the times were read, and every gap the clip jumps over.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from recorder.app.progress_display import ProgressLine, progress_style
from recorder.config import Config
from recorder.domain.units import human_bytes, human_seconds
from recorder.ffmpeg.binary import find_tools
from recorder.footage.recordings import TimeError, local_text, overlapping, parse_time, scan_folder
from recorder.storage.export import ExportError, check_clip, probe_clip_duration, write_clip
from recorder.storage.retention.filesystem import RecordingsFolder

EXIT_OK, EXIT_PROBLEMS = 0, 1


def _warn(message: str) -> None:
    print(f"camera-recorder: --export: {message}", file=sys.stderr)


def _fail(message: str) -> int:
    _warn(message)
    return EXIT_PROBLEMS


def _both(ts: float) -> str:
    return f"{local_text(ts)} ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(ts))} UTC)"


def orphaned_cameras(config: Config) -> list[str]:
    """Cameras not in the config whose folders hold their segments, as retention indexes them (no symlinks)."""
    folder = RecordingsFolder(config.recording.base_directory.absolute(), tuple(c.id for c in config.cameras))
    return [cam for cam in folder.unconfigured_folders() if folder.list_camera(cam, {}, ())]


def export_command(
    config: Config, camera: str, since: str, until: str | None, output: Path, *, log_format: str | None = None
) -> int:
    known = [c.id for c in config.cameras]
    if camera not in known:
        # A removed or renamed camera's footage is kept until retention ages it: it can be exported too.
        folder = RecordingsFolder(config.recording.base_directory.absolute(), tuple(known))
        if camera not in folder.unconfigured_folders() or not folder.list_camera(camera, {}, ()):
            orphans = orphaned_cameras(config)
            also = f"; folders of cameras not in the config: {', '.join(orphans)}" if orphans else ""
            return _fail(f"no camera {camera!r} in the config; cameras: {', '.join(known) or 'none'}{also}")
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
    bar = ProgressLine(
        f"exporting {camera} to {output.name}", plan.recorded_seconds, progress_style(log_format),
        describe=lambda done, total: f"{human_seconds(done)} of {human_seconds(total)} copied",
    )  # fmt: skip
    try:
        write_clip(
            plan, tools.ffmpeg, output, held=clip.held,
            on_progress=lambda p: bar.update(p.out_time_seconds, ended=p.ended),
        )  # fmt: skip
    except ExportError as exc:
        return _fail(str(exc))
    finally:
        bar.close()
        clip.close()
    size = output.stat().st_size
    pieces = len(plan.pieces)
    # What a player shows: the container's duration. It starts at the keyframe at or before the asked
    # start, so it can be a little longer than the recorded time the segments' names and lengths add up to.
    duration = probe_clip_duration(tools.ffprobe or "ffprobe", output)
    length = f"{duration:.1f} s" if duration is not None else f"about {plan.recorded_seconds:.1f} s"
    print(
        f"wrote {output}: camera {camera}, {pieces} segment(s), {length}, {size} bytes ({human_bytes(size)}), "
        f"in {human_seconds(bar.elapsed)}"
    )
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
