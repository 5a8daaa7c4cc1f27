"""A clip of a time range: the covering segments joined by FFmpeg's concat demuxer, stream copied.

Cuts fall on keyframes (stream copy cannot cut between them: the clip starts at the keyframe at or before
the asked start and ends at the packet before the asked end). Segments are joined across boundaries;
where nothing was recorded the clip jumps over the hole, and every such gap is reported to the caller,
never silently glued.

Before FFmpeg runs, every segment of the clip is opened and held (`HeldSegments`): retention deleting one
or the night transcoder swapping one meanwhile changes nothing in the clip, since FFmpeg reads the held
descriptors. Each held segment is probed: one that cannot be read, or is shorter than the index thought,
becomes a reported gap; segments of different codecs or picture sizes (the night transcoder's HEVC beside
the camera's H.264) cannot be joined by a stream copy, so such a range is refused with one line naming
the boundary.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from recorder.ffmpeg.progress import Progress, ProgressParser
from recorder.footage.recordings import GAP_TOLERANCE_SECONDS, Gap, Segment, iso_utc, overlapping

# Long enough for a day of segments to be read and copied; the CLI and the page both wait on it.
EXPORT_TIMEOUT = 1800.0
# Containers a clip may be written as; mp4 to a pipe is fragmented (it cannot seek back to its header).
CLIP_FORMATS = ("mp4", "mkv")
# Each held segment is one descriptor of the exporting process (the daemon serves two clips at once): a
# day of 30-minute segments is 49; a range needing more is refused rather than run out of descriptors.
MAX_HELD_SEGMENTS = 256
PROBE_TIMEOUT = 30.0


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

    def concat_list(self, read_from: Mapping[Path, str] | None = None) -> str:
        """FFmpeg's concat demuxer script of the pieces, each read from `read_from[path]` where given (a held
        descriptor's `/dev/fd/N`), else from its path."""
        lines = ["ffconcat version 1.0"]
        for p in self.pieces:
            source = read_from.get(p.segment.path, str(p.segment.path)) if read_from else str(p.segment.path)
            escaped = source.replace("'", "'\\''")
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


@dataclass(frozen=True)
class StreamShape:
    """What a stream copy needs to be equal in every piece of one clip."""

    codec: str
    width: int
    height: int
    pixel_format: str

    def __str__(self) -> str:
        return f"{self.codec} {self.width}x{self.height} {self.pixel_format}"


class _HeldInThisProcess:
    """The segments this process's clips hold now: the daemon's retention leaves them be while a download
    runs (`held_segment_paths`). A clip cut by another process (`--export`) is safe all the same: it reads
    its held descriptors, so a deletion frees the space only once it is done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[Path, int] = {}

    def add(self, paths: Sequence[Path]) -> None:
        with self._lock:
            for path in paths:
                self._count[path] = self._count.get(path, 0) + 1

    def remove(self, paths: Sequence[Path]) -> None:
        with self._lock:
            for path in paths:
                left = self._count.get(path, 0) - 1
                if left > 0:
                    self._count[path] = left
                else:
                    self._count.pop(path, None)

    def paths(self) -> list[Path]:
        with self._lock:
            return list(self._count)


_HELD = _HeldInThisProcess()


def held_segment_paths() -> list[Path]:
    """Segments a clip of this process holds now: for retention to protect as it protects open ones."""
    return _HELD.paths()


class HeldSegments:
    """Descriptors open on a clip's segments, read by FFmpeg as `/dev/fd/N` (`pass_fds`): the clip holds
    exactly the files it was planned from, whatever retention or the transcoder does to their names, and
    this process's retention does not delete them meanwhile (held_segment_paths)."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        if len(segments) > MAX_HELD_SEGMENTS:
            raise ExportError(
                f"the range needs {len(segments)} segments, more than {MAX_HELD_SEGMENTS} in one clip: "
                "ask a shorter one"
            )
        self._fds: dict[Path, int] = {}
        self.missing: list[Segment] = []  # gone or unreadable between the listing and now
        for seg in segments:
            try:
                self._fds[seg.path] = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, PermissionError, IsADirectoryError):
                self.missing.append(seg)
            except OSError as exc:  # EMFILE, ENFILE, ENOMEM: the process's trouble, not the segment's
                for fd in self._fds.values():
                    os.close(fd)
                raise ExportError(f"cannot open the segments of the clip: {exc.strerror or exc}") from None
        _HELD.add(list(self._fds))

    def fd_of(self, path: Path) -> int:
        return self._fds[path]

    def sources(self) -> dict[Path, str]:
        return {path: f"/dev/fd/{fd}" for path, fd in self._fds.items()}

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(self._fds.values())

    def holds(self, path: Path) -> bool:
        return path in self._fds

    def close(self) -> None:
        _HELD.remove(list(self._fds))
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> HeldSegments:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def probe_held(ffprobe: str, held: HeldSegments, seg: Segment) -> tuple[Segment, StreamShape] | None:
    """The segment with the duration its container gives, and its video stream's shape; None when ffprobe
    finds no video in it (a header-only leftover, a truncated file)."""
    fd = held.fd_of(seg.path)
    source = f"/dev/fd/{fd}"
    try:
        result = subprocess.run(
            [
                ffprobe, "-v", "error", "-select_streams", "v:0",
                "-show_entries", "stream=codec_name,width,height,pix_fmt:format=duration", "-of", "json", source,
            ],
            capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False, pass_fds=(fd,),
        )  # fmt: skip
        data = json.loads(result.stdout or "{}")
        stream = data["streams"][0]
        shape = StreamShape(stream["codec_name"], int(stream["width"]), int(stream["height"]), stream["pix_fmt"])
    except (subprocess.TimeoutExpired, ValueError, KeyError, IndexError, TypeError):
        return None
    try:
        duration = float(data.get("format", {}).get("duration"))
    except (TypeError, ValueError):
        duration = seg.duration  # a cut-off file may have no duration written: keep the index's estimate
    else:
        seg = replace(seg, duration=duration, duration_known=True)
    return seg, shape


@dataclass(frozen=True)
class CheckedClip:
    """A plan whose every piece is held open and was probed; close() when FFmpeg is done with it."""

    plan: ExportPlan
    held: HeldSegments
    unreadable: tuple[Segment, ...]  # gone or unreadable, dropped: their time is in plan.gaps
    shortened: tuple[Segment, ...]  # hold less than the index said (as probed): the rest is in plan.gaps

    @property
    def damaged(self) -> tuple[Segment, ...]:
        """Segments the clip holds less of than the recordings promised."""
        return (*self.unreadable, *self.shortened)

    def close(self) -> None:
        self.held.close()


def check_clip(camera: str, segments: Sequence[Segment], start: float, end: float, ffprobe: str) -> CheckedClip:
    """Hold and probe the segments covering [start, end) and plan the clip from what they really hold.

    Raises ExportError when nothing readable is left, or when the pieces cannot be joined by a stream copy
    (different codecs or picture sizes), naming the first piece of the second kind."""
    if end <= start:
        raise ExportError("the end of the range must be after its start")
    covering = overlapping(segments, start, end)
    held = HeldSegments(covering)
    try:
        readable: list[Segment] = []
        unreadable: list[Segment] = list(held.missing)
        shortened: list[Segment] = []
        first_shape: tuple[StreamShape, Segment] | None = None
        for seg in covering:
            if not held.holds(seg.path):
                continue
            probed = probe_held(ffprobe, held, seg)
            if probed is None:
                unreadable.append(seg)
                continue
            probed_seg, shape = probed
            if seg.duration_known and probed_seg.duration < seg.duration - GAP_TOLERANCE_SECONDS:
                shortened.append(probed_seg)
            seg = probed_seg
            if first_shape is None:
                first_shape = (shape, seg)
            elif shape != first_shape[0]:
                raise ExportError(
                    f"camera {camera}: {seg.path.name} is {shape}, the segments before it {first_shape[0]}: "
                    f"a stream copy cannot join them; export up to {iso_utc(seg.start)} and from it apart"
                )
            readable.append(seg)
        plan = plan_export(camera, readable, start, end)
    except BaseException:  # ffprobe missing or unforkable too: never leave the descriptors (and holds) behind
        held.close()
        raise
    return CheckedClip(plan, held, tuple(unreadable), tuple(shortened))


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
    held: HeldSegments | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> None:
    """Run FFmpeg for the plan into the file `output` (which must not exist yet), reading the pieces from
    `held` where given; `on_progress` hears FFmpeg's own -progress blocks (how much of the clip is written)
    while it runs."""
    if output.exists():
        raise ExportError(f"{output} exists already; choose another name")
    container = container_of(output)
    with tempfile.TemporaryDirectory(prefix="camera-recorder-export-") as tmp:
        concat = Path(tmp) / "pieces.ffconcat"
        concat.write_text(plan.concat_list(held.sources() if held else None), encoding="utf-8")
        argv = export_argv(ffmpeg, concat, str(output), container)
        if on_progress is not None:
            argv = [argv[0], "-progress", "pipe:1", "-nostats", *argv[1:]]
        with (Path(tmp) / "stderr").open("w+", encoding="utf-8", errors="replace") as errors:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, text=True,
                pass_fds=held.fds if held else (),
            )  # fmt: skip
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
