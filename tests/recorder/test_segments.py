"""Segment names and the check of a segment cut off by a crash, with the real ffprobe."""

from __future__ import annotations

import subprocess
from pathlib import Path

from recorder.segments import check_segment, parse_segment_list_line, parse_segment_name


def test_names_are_parsed_as_utc_and_foreign_names_refused() -> None:
    parsed = parse_segment_name("cam1_20261125_120000.mkv")
    assert parsed is not None and parsed.camera == "cam1" and parsed.start == 1795608000.0
    for name in ("cam1_20261125_120000.avi", "notes.txt", "cam1_20261325_120000.mkv", ".cam1_20261125_120000.mkv"):
        assert parse_segment_name(name) is None


def test_segment_list_entries() -> None:
    assert parse_segment_list_line("cam1_20261125_120000.mkv,0.000000,1800.016000\n") == (
        "cam1_20261125_120000.mkv",
        0.0,
        1800.016,
    )
    assert parse_segment_list_line("frame=25") is None


def test_check_tells_playable_from_empty_from_damaged(tmp_path: Path) -> None:
    good = tmp_path / "cam1_20261125_120000.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "1",
         "-c:v", "libx264", "-preset", "ultrafast", str(good)],
        check=True,
    )  # fmt: skip
    result = check_segment("ffprobe", good)
    assert (result.frames, result.discard_reason) == (1, None)
    assert result.duration is not None and 0.9 < result.duration < 1.1

    empty = tmp_path / "cam1_20261125_120001.mkv"
    empty.touch()
    assert check_segment("ffprobe", empty).discard_reason == "empty"

    garbage = tmp_path / "cam1_20261125_120002.mkv"
    garbage.write_bytes(b"\x13\x37" * 40000)
    assert check_segment("ffprobe", garbage).discard_reason == "unreadable"
