"""The demo's synthetic cameras: each its own test pattern with its name and the wall-clock time burned in.

So a new user sees at a glance that segments are per camera and that their times are right. The text needs
FFmpeg's drawtext filter and a font; without either the cameras still get distinct patterns, untitled.
"""

from __future__ import annotations

import functools
import logging
import re
import subprocess
from pathlib import Path

from recorder.config import CameraConfig

log = logging.getLogger(__name__)

# lavfi sources that look nothing alike, handed out in camera order.
DEMO_PATTERNS = ("smptehdbars", "testsrc2", "rgbtestsrc", "testsrc", "pal100bars", "yuvtestsrc")
# Debian's fonts-dejavu-core, then the usual places of other distributions.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
)


@functools.cache
def has_drawtext(ffmpeg: str) -> bool:
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-filters"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(r"^\s*\S+\s+drawtext\s", out, re.MULTILINE) is not None


def find_font() -> str | None:
    return next((f for f in FONT_CANDIDATES if Path(f).is_file()), None)


def _drawtext_safe(text: str) -> str:
    """Only characters that need no escaping in a filter graph's quoted option."""
    return re.sub(r"[^A-Za-z0-9 _.()+-]", "_", text)


def demo_pattern(camera: CameraConfig, index: int, ffmpeg: str, font: str | None) -> str:
    """The lavfi graph of one demo camera: its pattern, and its name and UTC time when text can be drawn."""
    source = DEMO_PATTERNS[index % len(DEMO_PATTERNS)]
    graph = f"{source}=size={camera.resolution}:rate={camera.framerate}"
    if font is None or not has_drawtext(ffmpeg):
        return graph
    height = camera.resolution.height if camera.resolution else 720
    size = max(12, height // 16)
    # FFmpeg records with TZ=UTC (segment names are UTC), so the clock is UTC and says so. Inside the quoted
    # text, `\\\:` is a colon that survives both the graph's and drawtext's own unescaping.
    clock = r"%{gmtime\:%Y-%m-%d %H\\\:%M\\\:%S} UTC"
    text = f"{_drawtext_safe(camera.name)} ({_drawtext_safe(camera.id)})  {clock}"
    return (
        f"{graph},drawtext=fontfile={font}:fontsize={size}:fontcolor=white:box=1:boxcolor=black@0.6:"
        f"boxborderw=4:x=8:y=8:text='{text}'"
    )


def describe_text_support(ffmpeg: str) -> str | None:
    """Why the demo's pictures carry no text, or None when they do."""
    if not has_drawtext(ffmpeg):
        return f"{ffmpeg} has no drawtext filter: the demo's pictures carry no camera name or time"
    if find_font() is None:
        return "no DejaVu font found (install fonts-dejavu-core): the demo's pictures carry no camera name or time"
    return None
