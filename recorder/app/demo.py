"""`camera-recorder --demo`: synthetic cameras, each with its own titled test pattern, recorded into --output."""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import replace
from pathlib import Path

from recorder.config import CameraConfig, Config, Resolution, SourceKind, load_config, parse_config, resolve_config_path
from recorder.ffmpeg.binary import find_tools

DEMO_RESOLUTION = Resolution(640, 360)
DEMO_FRAMERATE = 15
DEMO_SEGMENT_TIME = 10
DEMO_CAMERAS = {"cam1": "Demo left", "cam2": "Demo right"}


def demo_config(args: argparse.Namespace) -> Config:
    """Two cheap synthetic cameras (or the config's cameras made synthetic), recorded into --output."""
    output = Path(args.output or "demo-recordings").absolute()
    if args.config:
        base = load_config(resolve_config_path(args.config))
        cameras = tuple(_synthetic(cam) for cam in base.cameras)
        recording = replace(base.recording, base_directory=output, segment_time=DEMO_SEGMENT_TIME)
        return _with_demo_patterns(replace(base, cameras=cameras, recording=recording))
    raw = {
        "cameras": {
            cam_id: {
                "test_pattern": True,
                "name": name,
                "resolution": str(DEMO_RESOLUTION),
                "framerate": DEMO_FRAMERATE,
            }
            for cam_id, name in DEMO_CAMERAS.items()
        },
        "recording": {"segment_time": DEMO_SEGMENT_TIME, "base_directory": str(output)},
    }
    return _with_demo_patterns(parse_config(raw, source="--demo"))


def _with_demo_patterns(config: Config) -> Config:
    """Each synthetic camera its own pattern, titled with its name and the time (see recorder/app/demo_config.py)."""
    from recorder.app import demo_config as demo

    ffmpeg = find_tools(config.system).ffmpeg or "ffmpeg"
    font = demo.find_font()
    missing = demo.describe_text_support(ffmpeg)
    if missing:
        print(f"camera-recorder: note: {missing}", file=sys.stderr)
    cameras = tuple(
        replace(cam, location=demo.demo_pattern(cam, index, ffmpeg, font)) for index, cam in enumerate(config.cameras)
    )
    return replace(config, cameras=cameras)


def status_page_url(scheme: str, address: str) -> str:
    """The status page's URL for a browser: a wildcard listen address becomes this host's name."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "", "::"):
        host = socket.gethostname() or "localhost"
    return f"{scheme}://{host}:{port}/"


def demo_banner(status_url: str, metrics_url: str, output: Path) -> str:
    """What the demo prints first: where to look, where it records, how to stop it."""
    return (
        f"Demo recording two synthetic cameras into {output}\n"
        f"  status page: {status_url}  (pictures, timeline, clips)\n"
        f"  metrics:     {metrics_url}\n"
        "  Ctrl-C stops it and prints what each camera recorded; port taken? add --listen-address 127.0.0.1:9101"
    )


def _synthetic(camera: CameraConfig) -> CameraConfig:
    return replace(
        camera, source=SourceKind.TEST_PATTERN, location="", match=None, input_format=None,
        resolution=DEMO_RESOLUTION, framerate=DEMO_FRAMERATE,
    )  # fmt: skip
