"""Which FFmpeg runs: the original's order (jellyfin-ffmpeg first), overridable in config."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from recorder.config import SystemConfig

# jellyfin-ffmpeg is a build with working QSV; ffmpeg-qsv is the original's own build; then PATH.
FFMPEG_CANDIDATES = ("/usr/lib/jellyfin-ffmpeg/ffmpeg", "/usr/local/bin/ffmpeg-qsv", "ffmpeg")
FFPROBE_BESIDE = {"ffmpeg": "ffprobe", "ffmpeg-qsv": "ffprobe-qsv"}


@dataclass(frozen=True)
class FFmpegTools:
    ffmpeg: str | None  # None: no FFmpeg was found
    ffprobe: str | None


def _which(program: str) -> str | None:
    if os.sep in program:
        return program if os.access(program, os.X_OK) else None
    return shutil.which(program)


def find_tools(system: SystemConfig) -> FFmpegTools:
    """FFmpeg and its ffprobe: configured paths win, then the original's search order."""
    ffmpeg = _which(system.ffmpeg) if system.ffmpeg else next(filter(None, map(_which, FFMPEG_CANDIDATES)), None)
    if system.ffprobe:
        ffprobe = _which(system.ffprobe)
    elif ffmpeg:
        path = Path(ffmpeg)
        beside = path.with_name(FFPROBE_BESIDE.get(path.name, "ffprobe"))
        ffprobe = str(beside) if os.access(beside, os.X_OK) else _which("ffprobe")
    else:
        ffprobe = _which("ffprobe")
    return FFmpegTools(ffmpeg, ffprobe)


@functools.cache
def ffmpeg_version(ffmpeg: str) -> str:
    """The version FFmpeg reports of itself, such as 5.1.6-0+deb12u1, or 'unknown'."""
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"ffmpeg version (\S+)", out)
    return match[1] if match else "unknown"


@functools.cache
def ffmpeg_encoders(ffmpeg: str) -> frozenset[str]:
    """Names of the encoders this FFmpeg was built with."""
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    # Lines look like " V....D libx264              libx264 H.264 / AVC ...".
    return frozenset(m[1] for m in re.finditer(r"^\s*[VAS][.A-Z]{5}\s+(\S+)", out, re.MULTILINE))
