#!/usr/bin/env python3
"""A stand-in FFmpeg for a V4L2 camera that is not there: the recorder's exact command, with the
`-f v4l2 ... -i /dev/videoN` input replaced by a live test pattern (encoded, since a pattern is raw).

Set as `system.ffmpeg` in a test config; every other argument reaches the real ffmpeg unchanged."""

from __future__ import annotations

import os
import shutil
import sys

STAND_IN = ["-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25"]
ENCODE = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p"]


def rewrite(argv: list[str]) -> list[str]:
    if "v4l2" not in argv:
        return argv
    start = argv.index("-f", 0)
    while argv[start + 1] != "v4l2":
        start = argv.index("-f", start + 1)
    end = argv.index("-i", start) + 2
    out = argv[:start] + STAND_IN + argv[end:]
    if "copy" in out:
        at = out.index("copy") - 1  # "-c:v copy"
        out[at : at + 2] = ENCODE
    return out


if __name__ == "__main__":
    args = rewrite(sys.argv[1:])
    ffmpeg = os.environ.get("REAL_FFMPEG") or shutil.which("ffmpeg") or "ffmpeg"
    os.execv(ffmpeg, [ffmpeg, *args])
