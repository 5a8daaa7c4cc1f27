"""A clip of a time range: the covering segments joined by FFmpeg's concat demuxer, stream copied.

Cuts fall on keyframes (stream copy cannot cut between them: the clip starts at the keyframe at or before
the asked start and ends at the packet before the asked end). Segments are joined across boundaries;
where nothing was recorded the clip jumps over the hole, and every such gap is reported to the caller,
never silently glued.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from recorder.progress import Progress, ProgressParser
from recorder.recordings import GAP_TOLERANCE_SECONDS, Gap, Segment, overlapping

# Long enough for a day of segments to be read and copied; the CLI and the page both wait on it.
EXPORT_TIMEOUT = 1800.0
# Containers a clip may be written as; mp4 to a pipe is fragmented (it cannot seek back to its header).
CLIP_FORMATS = ("mp4", "mkv")


class ExportError(Exception):
    """Nothing can be exported for the asked range; the message says why."""


@dataclass(frozen=True)
class Piece:
    segment: Segment
    inpoint: float | None  # seconds into the segment; None: from its start
    outpoint: float | None  # seconds into the segment; None: to its end


@dataclass(frozen=True)
class ExportPlan:
    camera: str
    start: float
    end: float
    pieces: tuple[Piece, ...]
    gaps: tuple[Gap, ...]  # inside [start, end), including before the first and after the last segment

    @property
    def recorded_seconds(self) -> float:
        total = 0.0
        for p in self.pieces:
            total += (p.outpoint if p.outpoint is not None else p.segment.duration) - (p.inpoint or 0.0)
        return total

    def concat_list(self) -> str:
        """FFmpeg's concat demuxer script of the pieces."""
        lines = ["ffconcat version 1.0"]
        for p in self.pieces:
            escaped = str(p.segment.path).replace("'", "'\\''")
            lines.append(f"file '{escaped}'")
            if p.inpoint is not None:
                lines.append(f"inpoint {p.inpoint:.3f}")
            if p.outpoint is not None:
                lines.append(f"outpoint {p.outpoint:.3f}")
        return "\n".join(lines) + "\n"


def plan_export(camera: str, segments: Sequence[Segment], start: float, end: float) -> ExportPlan:
    """The pieces of `segments` (sorted by start) covering [start, end) and the gaps between them."""
    if end <= start:
        raise ExportError("the end of the range must be after its start")
    covering = overlapping(segments, start, end)
    if not covering:
        raise ExportError(f"camera {camera} recorded nothing in the asked range")
    pieces = []
    gaps = []
    cursor = start
    for seg in covering:
        if seg.start - cursor > GAP_TOLERANCE_SECONDS:
            gaps.append(Gap(cursor, seg.start))
        inpoint = start - seg.start if seg.start < start else None
        outpoint = end - seg.start if seg.end > end else None
        pieces.append(Piece(seg, inpoint, outpoint))
        cursor = max(cursor, seg.end)
    if end - cursor > GAP_TOLERANCE_SECONDS:
        gaps.append(Gap(cursor, end))
    return ExportPlan(camera, start, end, tuple(pieces), tuple(gaps))


def export_argv(ffmpeg: str, concat_file: Path, output: str, container: str) -> list[str]:
    """Stream copy of the concat script's pieces into `output` ("pipe:1" for a download)."""
    muxer = ["-f", "matroska"] if container == "mkv" else ["-f", "mp4"]
    if container == "mp4":
        # A pipe cannot seek back to write the index: fragments then; a file gets its index up front.
        flags = "frag_keyframe+empty_moov+default_base_moof" if output == "pipe:1" else "+faststart"
        muxer += ["-movflags", flags]
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
        "-f", "concat", "-safe", "0", "-i", str(concat_file),
        "-map", "0:v:0", "-c", "copy", "-avoid_negative_ts", "make_zero", *muxer, "-n", output,
    ]  # fmt: skip


def container_of(output: Path) -> str:
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in CLIP_FORMATS:
        raise ExportError(f"{output}: write the clip as .mp4 or .mkv")
    return suffix


def write_clip(
    plan: ExportPlan,
    ffmpeg: str,
    output: Path,
    timeout: float = EXPORT_TIMEOUT,
    *,
    on_progress: Callable[[Progress], None] | None = None,
) -> None:
    """Run FFmpeg for the plan into the file `output` (which must not exist yet); `on_progress` hears FFmpeg's
    own -progress blocks (how much of the clip is written) while it runs."""
    if output.exists():
        raise ExportError(f"{output} exists already; choose another name")
    container = container_of(output)
    with tempfile.TemporaryDirectory(prefix="camera-recorder-export-") as tmp:
        concat = Path(tmp) / "pieces.ffconcat"
        concat.write_text(plan.concat_list(), encoding="utf-8")
        argv = export_argv(ffmpeg, concat, str(output), container)
        if on_progress is not None:
            argv = [argv[0], "-progress", "pipe:1", "-nostats", *argv[1:]]
        with (Path(tmp) / "stderr").open("w+", encoding="utf-8", errors="replace") as errors:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, text=True)
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            try:
                parser = ProgressParser()
                assert proc.stdout is not None
                for line in proc.stdout:
                    progress = parser.feed(line)
                    if progress is not None and on_progress is not None:
                        on_progress(progress)
                returncode = proc.wait()
            finally:
                timed_out = not timer.is_alive() and proc.returncode != 0
                timer.cancel()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            errors.seek(0)
            stderr = errors.read()
    if timed_out:
        output.unlink(missing_ok=True)
        raise ExportError(f"FFmpeg took longer than {timeout:g} s")
    if returncode != 0:
        output.unlink(missing_ok=True)
        raise ExportError(f"FFmpeg failed: {stderr.strip() or f'exit status {returncode}'}")


def probe_clip_duration(ffprobe: str, clip: Path) -> float | None:
    """The written clip's duration as its container gives it (what a player shows), or None."""
    result = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(clip)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    try:
        return float(result.stdout.strip())
    except ValueError:
        return None


def probe_durations(ffprobe: str, segments: Sequence[Segment]) -> list[Segment]:
    """Segments whose duration was estimated, with the duration their container gives (ffprobe)."""
    out = []
    for seg in segments:
        if not seg.duration_known:
            result = subprocess.run(
                [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(seg.path)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            try:
                seg = Segment(seg.camera, seg.start, float(result.stdout.strip()), seg.size, seg.path, True)
            except ValueError:
                pass  # keep the estimate: a cut-off file may have no duration written
        out.append(seg)
    return out
