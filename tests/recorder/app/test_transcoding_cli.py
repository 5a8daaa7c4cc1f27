"""`--transcode [--dry-run]` and the transcoding line of `--stats`, as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import probe
from transcoding_support import make_segment

from recorder.app.cli import main
from recorder.domain.units import human_bytes as _human
from recorder.transcoding.originals import originals_folder


def write(tmp_path: Path, **transcoding: object) -> Path:
    path = tmp_path / "config.yaml"
    raw = {
        "cameras": {"cam1": {"test_pattern": True}},
        "recording": {"base_directory": str(tmp_path / "rec")},
        "transcoding": {"codec": "libx265", "preset": "ultrafast", "quality": 22, "min_age_days": 7, **transcoding},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def test_dry_run_lists_each_due_file_with_estimated_savings_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seg = make_segment(tmp_path / "rec", "cam1", age_days=8)
    make_segment(tmp_path / "rec", "cam1", age_days=2)  # too young
    content = seg.read_bytes()
    assert main(["-c", str(write(tmp_path)), "--transcode", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would transcode cam1/{seg.name}" in out
    assert "~50% saved" in out  # assumed before anything was measured here
    assert "1 segments due" in out
    assert seg.read_bytes() == content


def test_transcode_runs_one_pass_now_and_stats_shows_transcoded_vs_original_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seg = make_segment(tmp_path / "rec", "cam1", age_days=8)
    size_before = seg.stat().st_size
    # The window is closed at any hour of this test's day but one; --transcode does not ask it.
    config = write(tmp_path, run_schedule_start="03:00", run_schedule_end="03:01")
    assert main(["-c", str(config), "--transcode"]) == 0
    assert f"transcoded cam1/{seg.name}" in capsys.readouterr().out
    assert probe(seg)["codec"] == "hevc"
    assert (originals_folder(tmp_path / "rec", "cam1") / seg.name).stat().st_size == size_before
    assert main(["-c", str(config), "--stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["transcoding"]
    assert stats["transcoded_segments"] == 1
    assert stats["original_bytes"] == size_before
    assert stats["transcoded_bytes"] == seg.stat().st_size
    assert stats["kept_originals"] == 1
    assert stats["backlog_segments"] == 0
    assert main(["-c", str(config), "--stats"]) == 0
    assert "Transcoding (disabled): 1 segments transcoded" in capsys.readouterr().out
    # A second dry run now uses the measured ratio and finds nothing due.
    assert main(["-c", str(config), "--transcode", "--dry-run"]) == 0
    assert "0 segments due" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Progress, totals and reasons (issue 21)


def test_transcode_shows_each_encodes_progress_and_the_totals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_segment(tmp_path / "rec", "cam1", age_days=9)
    second = make_segment(tmp_path / "rec", "cam1", age_days=8)
    before = first.stat().st_size + second.stat().st_size
    assert main(["-c", str(write(tmp_path)), "--transcode"]) == 0
    captured = capsys.readouterr()
    # Not a terminal: plain lines on stderr, from FFmpeg's own -progress, numbered across the pass.
    for number, seg in ((1, first), (2, second)):
        lines = [ln for ln in captured.err.splitlines() if ln.startswith(f"[{number}/2] cam1/{seg.name}: ")]
        assert lines and "100% (" in lines[-1] and "encoded" in lines[-1], captured.err
    after = first.stat().st_size + second.stat().st_size
    total = captured.out.splitlines()[-1]
    assert total.startswith("2 segments processed, 0 failed (2 transcoded); "), total
    assert f"{_human(before)} -> {_human(after)}, {_human(before - after)} saved (" in total
    assert "; took " in total


def test_transcode_with_nothing_due_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path)
    (tmp_path / "rec").mkdir()
    assert main(["-c", str(config), "--transcode"]) == 0
    out = capsys.readouterr().out
    assert "transcoding.enabled is false: the daemon never transcodes on its own" in out
    assert f"0 segments due: no recordings in {tmp_path / 'rec'} yet" in out
    make_segment(tmp_path / "rec", "cam1", age_days=2)
    assert main(["-c", str(config), "--transcode"]) == 0
    out = capsys.readouterr().out
    assert "0 segments due: 1 younger than transcoding.min_age_days (7 days); the first becomes due at " in out
    old = make_segment(tmp_path / "rec", "cam1", age_days=8)
    assert main(["-c", str(config), "--transcode"]) == 0
    assert f"transcoded cam1/{old.name}" in capsys.readouterr().out
    assert main(["-c", str(write(tmp_path, enabled=True)), "--transcode"]) == 0
    out = capsys.readouterr().out
    assert "transcoding.enabled is false" not in out
    assert "0 segments due: 1 done already, 1 younger than transcoding.min_age_days (7 days)" in out
