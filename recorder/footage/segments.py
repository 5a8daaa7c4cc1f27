"""Segment files: their names, what FFmpeg reports when one completes, and checking a cut-off one."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from recorder.config import CameraConfig, Container
from recorder.domain.compat import UTC
from recorder.domain.vocabulary import DiscardReason

log = logging.getLogger(__name__)

SEGMENT_EXTENSIONS = tuple(c.value for c in Container)
# `<camera>_YYYYmmdd_HHMMSS.<ext>`, as the original named them (FFmpeg `-strftime 1`), but in UTC: local
# time repeats an hour when daylight saving ends, and FFmpeg would overwrite that hour's segments.
NAME_TIMEZONE_ENV = {"TZ": "UTC0"}
# After the clock stepped back, names of the past exist already: FFmpeg would truncate them. The runs that
# follow name their segments `<camera>_YYYYmmdd_HHMMSS-<n>.<ext>`, n one more than any in the folder.
SEGMENT_NAME_RE = re.compile(
    r"^(?P<camera>[A-Za-z0-9][A-Za-z0-9_-]*)_(?P<stamp>\d{8}_\d{6})(?:-(?P<suffix>[1-9]\d{0,5}))?"
    r"\.(?P<ext>" + "|".join(SEGMENT_EXTENSIONS) + r")$"
)
STRFTIME_STAMP = "%Y%m%d_%H%M%S"
# A wall clock that moves back by more than this against the monotonic clock stepped (NTP slews smaller
# corrections without a step).
CLOCK_STEP_TOLERANCE_SECONDS = 1.0


@dataclass(frozen=True)
class SegmentName:
    camera: str
    start: float  # Unix time of the segment's first frame, to the second
    extension: str
    suffix: int = 0  # the `-n` of names given after a backward clock step; 0 for the usual names


def parse_segment_name(name: str) -> SegmentName | None:
    """The camera and start time a segment file name encodes, or None for anything else."""
    match = SEGMENT_NAME_RE.match(name)
    if not match:
        return None
    try:
        start = datetime.strptime(match["stamp"], STRFTIME_STAMP).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    return SegmentName(match["camera"], start, match["ext"], int(match["suffix"] or 0))


def _suffix_text(suffix: int) -> str:
    return f"-{suffix}" if suffix else ""


def segment_file_name(camera_id: str, start: float, extension: str = Container.MKV.value, suffix: int = 0) -> str:
    """The name FFmpeg gives a segment of `camera_id` starting at Unix time `start` (UTC, whatever `TZ` says)."""
    stamp = datetime.fromtimestamp(start, UTC).strftime(STRFTIME_STAMP)
    return f"{camera_id}_{stamp}{_suffix_text(suffix)}.{extension}"


def output_pattern(camera: CameraConfig, container: Container, suffix: int = 0) -> str:
    """The strftime file name pattern FFmpeg writes this camera's segments with (`suffix`: see SEGMENT_NAME_RE)."""
    return f"{camera.id}_{STRFTIME_STAMP}{_suffix_text(suffix)}.{container.value}"


def segment_duration_buckets(segment_time_seconds: float) -> tuple[float, ...]:
    """Histogram bounds around the configured segment time, so short and cut segments stand out."""
    fractions = (0.1, 0.25, 0.5, 0.75, 0.9, 0.98, 1.0, 1.02, 1.1, 1.5, 2.0)
    return tuple(round(segment_time_seconds * f, 3) for f in fractions)


@dataclass(frozen=True)
class CompletedSegment:
    camera: str
    path: Path
    start: float  # Unix time
    duration: float  # seconds
    size: int  # bytes


def parse_segment_list_line(line: str) -> tuple[str, float, float] | None:
    """FFmpeg's `-segment_list_type csv` entry: file name, start and end in stream seconds."""
    parts = line.strip().rsplit(",", 2)
    if len(parts) != 3:
        return None
    name, start, end = parts
    try:
        return name.strip('"'), float(start), float(end)
    except ValueError:
        return None


@dataclass(frozen=True)
class FolderNames:
    """What a start needs to know of the names in a camera's folder (one directory listing)."""

    newest_start: float | None  # start of the newest segment, whatever its suffix
    highest_suffix: int  # 0 when no name has one

    def seconds_until_unused_name(self, now: float) -> float:
        """How long until a segment started now gets a later name than the newest one (<= 0: none)."""
        return -1.0 if self.newest_start is None else self.newest_start + 1.0 - now


def folder_names(folder: Path, camera_id: str) -> FolderNames:
    newest: float | None = None
    highest = 0
    try:
        names = [entry.name for entry in _scandir(folder)]
    except OSError:
        return FolderNames(None, 0)
    for name in names:
        parsed = parse_segment_name(name)
        if parsed is None or parsed.camera != camera_id:
            continue
        if newest is None or parsed.start > newest:
            newest = parsed.start
        highest = max(highest, parsed.suffix)
    return FolderNames(newest, highest)


class ClockWatch:
    """Sees the wall clock step back: its offset from the monotonic clock shrinks between two looks."""

    def __init__(self, clock: Callable[[], float], monotonic: Callable[[], float]) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._offset = clock() - monotonic()

    def stepped_back(self) -> float:
        """Seconds the wall clock stepped back since the last look (0.0 when it did not)."""
        offset = self._clock() - self._monotonic()
        step = self._offset - offset
        # A forward step is followed too: a later step back is measured from where the clock is now.
        self._offset = offset
        return step if step > CLOCK_STEP_TOLERANCE_SECONDS else 0.0


def unfinished_segments(folder: Path, camera_id: str, since: float, completed: set[str], suffix: int = 0) -> list[Path]:
    """Segment files of this camera's run (named with `suffix`) started at or after `since` that FFmpeg never
    reported complete. The suffix matters after a backward clock step: the run names its files `-N`, and
    the older files between its start time and the clock's old time are not its own."""
    found = []
    try:
        entries = list(_scandir(folder))
    except OSError:
        return []
    for entry in entries:
        parsed = parse_segment_name(entry.name)
        if (
            parsed
            and parsed.camera == camera_id
            and parsed.suffix == suffix
            and parsed.start >= int(since)
            and entry.name not in completed
        ):
            found.append(Path(entry.path))
    return sorted(found)


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return [e for e in it if e.is_file(follow_symlinks=False)]


@dataclass(frozen=True)
class SegmentCheck:
    frames: int  # 0 or 1: only the first frame is decoded, which is what "playable" needs
    duration: float | None
    readable: bool  # ffprobe could read the container
    # False when ffprobe could not run at all (out of descriptors or processes, a timeout): nothing is
    # known about the file, so it is kept.
    checked: bool = True

    @property
    def discard_reason(self) -> DiscardReason | None:
        """Why the file is no recording, or None when it has a frame or nothing is known of it."""
        if self.frames > 0 or not self.checked:
            return None
        return DiscardReason.EMPTY if self.readable else DiscardReason.UNREADABLE


def check_segment(ffprobe: str, path: Path, timeout: float = 20.0) -> SegmentCheck:
    """Decode the first video frame of a segment; a cut-off file is kept only if that works."""
    cmd = [
        ffprobe, "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#1", "-count_frames",
        "-show_entries", "stream=nb_read_frames:format=duration", "-of", "default=noprint_wrappers=1", str(path),
    ]  # fmt: skip
    try:
        if path.stat().st_size == 0:
            # Killed before the muxer wrote its header: nothing to probe.
            return SegmentCheck(0, None, True)
    except OSError:
        return SegmentCheck(0, None, False)
    started = time.monotonic()
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("ffprobe could not check %s (kept): %s", path, exc)
        return SegmentCheck(0, None, False, checked=False)
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    frames = int(values["nb_read_frames"]) if values.get("nb_read_frames", "").isdigit() else 0
    try:
        duration: float | None = float(values.get("duration", ""))
    except ValueError:
        duration = None
    log.debug("checked %s in %.3f s: %d frames", path, time.monotonic() - started, frames)
    if result.returncode == 0 or _SAYS_END_OF_FILE in result.stderr:
        # A header with nothing after it (killed before the first cluster) makes ffprobe stop at "End of file":
        # the file is empty, not damaged.
        readable = (result.returncode == 0 and "nb_read_frames" in values) or _SAYS_END_OF_FILE in result.stderr
        return SegmentCheck(frames, duration, readable)
    if ffprobe_judged_invalid(result.returncode, result.stderr):
        return SegmentCheck(frames, duration, False)
    # Killed by a signal (the OOM killer), not executable (126/127), a broken wrapper, an error of its own:
    # ffprobe said nothing about the data, and a cut segment may hold real footage, so it is kept.
    last_line = result.stderr.strip().splitlines()[-1:] or ["no message"]
    log.warning("ffprobe could not check %s (kept): exit status %s, %s", path, result.returncode, last_line[0][:200])
    return SegmentCheck(frames, duration, False, checked=False)


_SAYS_END_OF_FILE = "End of file"
# What ffprobe (exit status 1) prints when it read the file and found no valid media in it.
_INVALID_DATA_MESSAGES = (
    "Invalid data found when processing input",
    "could not find codec parameters",
    "EBML header parsing failed",
    "moov atom not found",
)


def ffprobe_judged_invalid(returncode: int, stderr: str) -> bool:
    """True only when ffprobe ran to its own error exit (1) and said the data itself is invalid."""
    lowered = stderr.lower()
    return returncode == 1 and any(message.lower() in lowered for message in _INVALID_DATA_MESSAGES)


# A segment smaller than this, or without a duration, is decoded before it is counted: the muxer writes a
# header-only file when FFmpeg dies into a full disk or is killed right after a cut.
SUSPICIOUS_SEGMENT_BYTES = 8 * 1024


def remove_discarded(path: Path, reason: str, log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
    """Delete a segment without a decodable frame; one that cannot be deleted stays, and the log says why (it
    is no recording either way: the caller counts it as discarded)."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.error("cannot remove %s segment %s: %s", reason, path, exc)


def leftover_segments(ffprobe: str, folder: Path, camera_id: str) -> list[tuple[Path, DiscardReason]]:
    """Segments of `camera_id` in `folder` too small to hold a frame that indeed hold none (the header an FFmpeg
    killed before this start left), with why each is no recording: for the supervisor to remove and count."""
    try:
        entries = _scandir(folder)
    except OSError:
        return []
    found = []
    for entry in entries:
        parsed = parse_segment_name(entry.name)
        if parsed is None or parsed.camera != camera_id:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_size >= SUSPICIOUS_SEGMENT_BYTES:
                continue
        except OSError:
            continue
        reason = check_segment(ffprobe, Path(entry.path)).discard_reason
        if reason is not None:
            found.append((Path(entry.path), reason))
    return sorted(found)


@dataclass(frozen=True)
class CutSegment:
    """A segment an FFmpeg left unfinished when it ended: kept with a duration, or discarded with a reason."""

    path: Path
    duration: float  # seconds; 0.0 when unknown (or discarded)
    discard_reason: DiscardReason | None  # None: it holds a frame and is kept


def salvage_cut_segments(
    ffprobe: str,
    folder: Path,
    camera_id: str,
    since: float,
    completed: set[str],
    stream_seconds: float | None,
    suffix: int = 0,
) -> list[CutSegment]:
    """Judge each segment an ended FFmpeg left open: kept if its first frame decodes, else to be discarded.

    `stream_seconds` is how far into the open segment FFmpeg's own progress got (None without progress):
    FFmpeg's clock beats ffprobe's guess for a file that never got its duration written.
    """
    judged = []
    for path in unfinished_segments(folder, camera_id, since, completed, suffix):
        check = check_segment(ffprobe, path)
        reason = check.discard_reason
        duration = check.duration if stream_seconds is None else max(0.0, stream_seconds)
        judged.append(CutSegment(path, (duration or 0.0) if reason is None else 0.0, reason))
    return judged
