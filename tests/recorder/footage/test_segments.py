"""Segment names and the check of a segment cut off by a crash, with the real ffprobe."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from recorder.footage.segments import check_segment, parse_segment_list_line, parse_segment_name, salvage_cut_segments


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


def _wrapper(folder: Path, name: str, body: str) -> str:
    script = folder / name
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("killed", "kill -KILL $$"),  # the OOM killer's way: no exit status, no message
        ("not-found", 'exec /nonexistent/ffprobe "$@"'),  # exit 127
        ("not-executable", 'echo "$0: /usr/bin/ffprobe: Permission denied" >&2; exit 126'),
        ("broken-wrapper", 'echo "ffprobe wrapper: cannot read its settings" >&2; exit 1'),
    ],
)
def test_an_ffprobe_that_did_not_run_properly_keeps_the_cut_segment(tmp_path: Path, name: str, body: str) -> None:
    """Only ffprobe's own verdict on the data may condemn a file: a failure of ffprobe itself says nothing
    about it, and a cut segment holding real footage must not be unlinked as unreadable."""
    folder = tmp_path / "cam1"
    folder.mkdir()
    whole = tmp_path / "whole.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "2",
         "-c:v", "libx264", "-preset", "ultrafast", str(whole)],
        check=True,
    )  # fmt: skip
    cut = folder / "cam1_20261125_120000.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # FFmpeg killed mid-segment
    assert check_segment("ffprobe", cut).frames == 1, "the real ffprobe finds footage in the cut segment"
    ffprobe = _wrapper(tmp_path, name, body)

    result = check_segment(ffprobe, cut)

    assert result.checked is False and result.discard_reason is None
    (judged,) = salvage_cut_segments(ffprobe, folder, "cam1", 0.0, set(), stream_seconds=1.0)
    assert judged.discard_reason is None and judged.duration == 1.0
    assert cut.exists()


def test_ffprobe_saying_the_data_is_invalid_still_condemns_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "cam1_20261125_120002.mkv"
    garbage.write_bytes(os.urandom(4000))
    result = check_segment("ffprobe", garbage)
    assert result.checked is True and result.discard_reason == "unreadable"
