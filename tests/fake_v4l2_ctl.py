#!/usr/bin/env python3
"""Stand-in for v4l2-ctl that replays captured outputs from the directory named by FAKE_V4L2_DIR."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Files in FAKE_V4L2_DIR:
#   list-devices.txt               printed for --list-devices
#   <node>.info.txt                printed for -d /dev/<node> --info / -D / --all / -a
#   <node>.formats.txt             printed for -d /dev/<node> --list-formats-ext
# A missing file makes the command fail the way v4l2-ctl fails on a node it cannot open.

_INFO_OPTIONS = frozenset({"--info", "-D", "--all", "-a"})


def _device(argv: list[str]) -> str:
    """Return the device argument as v4l2-ctl reads it (-d X, -dX, --device X, --device=X)."""
    for index, arg in enumerate(argv):
        if arg in ("-d", "--device") and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--device="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-d") and len(arg) > 2 and not arg.startswith("--"):
            value = arg[2:]
        else:
            continue
        # v4l2-ctl takes a bare number as /dev/videoN.
        return f"/dev/video{value}" if value.isdigit() else value
    return "/dev/video0"


def main(argv: list[str]) -> int:
    """Print the recorded output for argv, or fail like v4l2-ctl."""
    root = os.environ.get("FAKE_V4L2_DIR")
    if not root:
        print("fake v4l2-ctl: FAKE_V4L2_DIR is not set", file=sys.stderr)
        return 2
    if "--list-devices" in argv:
        recorded = Path(root) / "list-devices.txt"
        if not recorded.is_file():
            print("Cannot open device /dev/video0, exiting.", file=sys.stderr)
            return 1
        sys.stdout.write(recorded.read_text(encoding="utf-8"))
        return 0
    device = _device(argv)
    if _INFO_OPTIONS.intersection(argv):
        kind = "info"
    elif "--list-formats-ext" in argv:
        kind = "formats"
    else:
        print(f"fake v4l2-ctl: unsupported arguments {argv}", file=sys.stderr)
        return 1
    recorded = Path(root) / f"{Path(device).name}.{kind}.txt"
    if not recorded.is_file():
        print(f"Cannot open device {device}, exiting.", file=sys.stderr)
        return 1
    sys.stdout.write(recorded.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
