"""Helpers for the transcoding tests: real small segments, configs, a transcoder with injected readings."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from recorder.config import Config, parse_config
from recorder.footage.segments import segment_file_name
from recorder.transcoding.gate import CpuReading, DiskReading, Gate, TranscodeState
from recorder.transcoding.worker import Transcoder

DAY = 86400.0
ROOMY_DISK = DiskReading(used_ratio=0.1, avail_bytes=10**12, low_space_warning_ratio=0.8)
QUIET_CPU = CpuReading(busy=0.0, iowait=0.0)


def make_segment(
    base: Path,
    camera: str,
    age_days: float,
    *,
    seconds: float = 2,
    size: str = "160x120",
    rate: int = 25,
    container: str = "mkv",
) -> Path:
    """A real H.264 segment as a camera's stream copy would leave it (high bitrate, every frame kept)."""
    path = base / camera / segment_file_name(camera, time.time() - age_days * DAY, container)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-qp", "12", "-g", str(rate),
            "-pix_fmt", "yuv420p", str(path),
        ],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def transcoding_config(base: Path, **transcoding: Any) -> Config:
    raw: dict[str, Any] = {
        "cameras": {"cam1": {"test_pattern": True}, "cam2": {"test_pattern": True}},
        "recording": {"base_directory": str(base)},
        "transcoding": {
            "enabled": True, "codec": "libx265", "preset": "ultrafast", "quality": 22, "min_age_days": 7,
            "keep_original_days": 1, "min_savings_percent": 20, "verify_quality": True, **transcoding,
        },
    }  # fmt: skip
    return parse_config(raw)


class FixedGate(Gate):
    """A gate whose answer the test sets."""

    def __init__(self, config: Config, state: TranscodeState = TranscodeState.RUNNING) -> None:
        super().__init__(config.transcoding, disk=lambda: ROOMY_DISK, cpu=lambda: QUIET_CPU, ignore_window=True)
        self.state = state
        self.asked = 0

    def decide(self) -> TranscodeState:
        self.asked += 1
        return self.state


def transcoder(config: Config, gate: Gate | None = None, **kwargs: Any) -> Transcoder:
    return Transcoder(config, ffmpeg="ffmpeg", ffprobe="ffprobe", gate=gate or FixedGate(config), **kwargs)
