"""Verification of a transcoded file against its original before the original may go.

A replacement passes when: ffprobe's duration is within 0.5 s or 1 % (the larger) of the original's; its
packet count (`-count_packets`: one per frame for video, without decoding) is within 1 %; a full decode
(`ffmpeg -v error -i X -f null -`) prints no error; and, with verify_quality, the SSIM of sampled seconds
(ffmpeg's `ssim` filter, the `All` figure) is at least SSIM_FLOOR.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from recorder.ffmpeg.process import die_with_parent

DURATION_TOLERANCE_SECONDS = 0.5
DURATION_TOLERANCE_RATIO = 0.01
FRAME_TOLERANCE_RATIO = 0.01
# SSIM 0.95 ("All", luma and chroma) is where HEVC at the usual CRF/ICQ 24-28 sits on camera footage
# (0.96-0.99); below it details such as plates and faces visibly soften. A sample is SSIM_SAMPLE_SECONDS
# at SSIM_SAMPLE_POINTS spread through the file, enough to catch a broken or mis-scaled encode cheaply.
SSIM_FLOOR = 0.95
SSIM_SAMPLE_SECONDS = 1.0
SSIM_SAMPLE_POINTS = (0.1, 0.5, 0.9)
_SSIM_ALL_RE = re.compile(r"SSIM .*All:(?P<all>[0-9.]+)")
# Verification reads whole files; bounded so a wedged ffprobe cannot hold the worker forever. Each tool
# dies with the thread that started it (PR_SET_PDEATHSIG), so none outlives a stopped daemon.
TOOL_TIMEOUT = 3600.0

# Runs one verification tool: (argv, timeout) -> (exit status, stdout, stderr). Raises OSError or
# subprocess.TimeoutExpired when the tool cannot run or finish (a failed verification), ToolInterrupted when
# the transcoder must stop (the job is abandoned, not failed). The worker's runner runs each tool like the
# encode: idle priority, its own process group, paused by the gate, killed on stop.
ToolRunner = Callable[[Sequence[str], float], "tuple[int, str, str]"]


class ToolInterrupted(Exception):
    """A verification tool was ended because the transcoder stops or its window closed."""


def run_tool(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
    """The plain runner (tests, benchmarks): the tool dies with the thread that started it."""
    out = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, preexec_fn=die_with_parent
    )
    return out.returncode, out.stdout, out.stderr


@dataclass(frozen=True)
class Tools:
    """The programs verification runs and how it runs each: they always travel together."""

    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    run: ToolRunner = run_tool


PLAIN_TOOLS = Tools()


@dataclass(frozen=True)
class MediaFacts:
    duration: float  # seconds (format duration)
    frames: int  # video packets counted
    codec: str


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # "" when ok, else one line saying what failed
    ssim: float | None = None


def probe(path: Path, tools: Tools = PLAIN_TOOLS) -> MediaFacts | None:
    """Duration, frame (packet) count and codec of the first video stream; None when unreadable."""
    argv = [
        tools.ffprobe, "-v", "error", "-select_streams", "v:0", "-count_packets",
        "-show_entries", "stream=nb_read_packets,codec_name:format=duration", "-of", "json", str(path),
    ]  # fmt: skip
    try:
        _, stdout, _ = tools.run(argv, TOOL_TIMEOUT)
        data = json.loads(stdout or "{}")
        stream = data["streams"][0]
        return MediaFacts(float(data["format"]["duration"]), int(stream["nb_read_packets"]), stream["codec_name"])
    except (subprocess.TimeoutExpired, OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _input_format(container: str | None) -> list[str]:
    """`-f <demuxer>` for a file whose name does not say its container (a temporary name); [] otherwise."""
    return ["-f", {"mkv": "matroska", "mp4": "mp4"}[container]] if container else []


def decode_errors(path: Path, container: str | None = None, tools: Tools = PLAIN_TOOLS) -> str:
    """What a full decode of `path` prints at error level; "" when it decodes cleanly."""
    argv = [
        tools.ffmpeg, "-hide_banner", "-nostdin", "-v", "error", *_input_format(container), "-i", str(path),
        "-map", "0:v:0", "-f", "null", "-",
    ]  # fmt: skip
    try:
        returncode, _, stderr = tools.run(argv, TOOL_TIMEOUT)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return str(exc)
    errors = stderr.strip()
    if returncode != 0 and not errors:
        errors = f"ffmpeg exited with status {returncode}"
    return errors


def sampled_ssim(
    original: Path, candidate: Path, duration: float, container: str | None = None, tools: Tools = PLAIN_TOOLS
) -> float | None:
    """The lowest SSIM (All) over the sampled seconds; None when FFmpeg could not compute it."""
    lowest: float | None = None
    length = min(SSIM_SAMPLE_SECONDS, duration)
    for point in SSIM_SAMPLE_POINTS:
        at = max(min(duration * point, duration - length), 0.0)
        argv = [
            tools.ffmpeg, "-hide_banner", "-nostdin", "-ss", f"{at:.3f}", "-t", f"{length:.3f}",
            *_input_format(container), "-i", str(candidate), "-ss", f"{at:.3f}", "-t", f"{length:.3f}",
            "-i", str(original), "-lavfi", "[0:v][1:v]ssim", "-f", "null", "-",
        ]  # fmt: skip
        try:
            returncode, _, stderr = tools.run(argv, TOOL_TIMEOUT)
        except (subprocess.TimeoutExpired, OSError):
            return None
        match = _SSIM_ALL_RE.search(stderr)
        if returncode != 0 or not match:
            return None
        value = float(match["all"])
        lowest = value if lowest is None else min(lowest, value)
    return lowest


def verify(
    original: Path,
    candidate: Path,
    *,
    container: str,
    check_quality: bool,
    original_facts: MediaFacts | None = None,
    tools: Tools = PLAIN_TOOLS,
) -> Verdict:
    """Whether `candidate` may replace `original` (see the module docstring for the rules).

    Raises ToolInterrupted when `tools.run` does (the transcoder stops): no verdict then.
    """
    before = original_facts or probe(original, tools)
    if before is None:
        return Verdict(False, "the original cannot be probed")
    after = probe(candidate, tools)
    if after is None:
        return Verdict(False, "the transcoded file cannot be probed")
    allowed = max(DURATION_TOLERANCE_SECONDS, DURATION_TOLERANCE_RATIO * before.duration)
    if abs(after.duration - before.duration) > allowed:
        return Verdict(False, f"duration {after.duration:.3f} s, original {before.duration:.3f} s")
    if abs(after.frames - before.frames) > FRAME_TOLERANCE_RATIO * before.frames:
        return Verdict(False, f"{after.frames} frames, original {before.frames}")
    errors = decode_errors(candidate, container, tools)
    if errors:
        return Verdict(False, "decode errors: " + errors.splitlines()[0][:200])
    if not check_quality:
        return Verdict(True, "")
    ssim = sampled_ssim(original, candidate, before.duration, container, tools)
    if ssim is None:
        return Verdict(False, "SSIM could not be computed")
    if ssim < SSIM_FLOOR:
        return Verdict(False, f"SSIM {ssim:.4f} below {SSIM_FLOOR}", ssim)
    return Verdict(True, "", ssim)
