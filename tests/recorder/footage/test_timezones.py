"""Segment names are UTC whatever the machine's time zone: FFmpeg's names, the code's and the tests' agree.

Each zone runs in a child process with `TZ` set (time zones are process-wide), including zones whose
offset is not a whole hour and one with daylight saving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import small_config

from recorder.ffmpeg.presets import build_command
from recorder.footage.segments import parse_segment_name, segment_file_name

REPO = Path(__file__).resolve().parents[3]
ZONES = ["UTC", "America/New_York", "Pacific/Chatham", "Asia/Kolkata", "Australia/Lord_Howe"]

# Instants either side of the US daylight-saving changes of 2024, and one in 2026.
INSTANTS = [1710054000.0, 1710057600.0, 1730613600.0, 1730617200.0, 1795608000.0]
# Runs in the child: the names the code builds for INSTANTS, what it parses them back to, and gmtime's stamp.
NAMING_CHECK = """
import json, sys, time
from recorder.footage.segments import parse_segment_name, segment_file_name
instants = json.loads(sys.argv[1])
print(json.dumps([[segment_file_name("cam1", t), parse_segment_name(segment_file_name("cam1", t)).start,
                   time.strftime("%Y%m%d_%H%M%S", time.gmtime(t))] for t in instants]))
"""


@pytest.mark.parametrize("zone", ZONES)
def test_names_built_and_parsed_in_utc_in_every_zone(zone: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", NAMING_CHECK, json.dumps(INSTANTS)],
        cwd=REPO, env={**os.environ, "TZ": zone, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for (name, parsed_start, utc_stamp), instant in zip(json.loads(out.stdout), INSTANTS, strict=True):
        assert name == f"cam1_{utc_stamp}.mkv"
        assert parsed_start == instant


@pytest.mark.parametrize("zone", ["Pacific/Chatham", "America/New_York"])
def test_ffmpeg_names_a_segment_as_the_code_does_in_any_zone(tmp_path: Path, zone: str) -> None:
    """The real FFmpeg with the recorder's environment, started from a non-UTC zone, writes the UTC name."""
    config = small_config(tmp_path, recording={"segment_time": 60})
    command = build_command(config.cameras[0], config, "ffmpeg")
    argv = [arg for arg in command.argv if arg not in ("-re",)]
    # One second of frames is enough for a name; the test pattern input is endless otherwise.
    argv = [argv[0], "-t", "1", *argv[1:]] if "-t" not in argv else argv
    before = time.time()
    command.output_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        argv, env={**os.environ, "TZ": zone, **command.env}, capture_output=True, timeout=60, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    after = time.time()
    names = [p.name for p in command.output_dir.iterdir()]
    assert names, "FFmpeg wrote no segment"
    parsed = parse_segment_name(names[0])
    assert parsed is not None and int(before) - 1 <= parsed.start <= after + 1
    assert names[0] == segment_file_name("cam1", parsed.start)
