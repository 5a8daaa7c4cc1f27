"""A clip holds what it promises: every piece held and probed before FFmpeg runs, so retention deleting a
segment meanwhile changes nothing, unreadable or shortened pieces are reported gaps (and `--export` exits
non-zero), and a range mixing the night transcoder's HEVC with the camera's H.264 is refused, not glued."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import probe
from test_export import SEGMENT_SECONDS, recorded_segment

from recorder.app.cli import main
from recorder.footage.recordings import Segment, scan_folder
from recorder.storage.export import MAX_HELD_SEGMENTS, ExportError, HeldSegments, check_clip, write_clip

FRAMES_PER_SEGMENT = SEGMENT_SECONDS * 10  # recorded_segment films at 10 fps


def decode_errors(clip: Path) -> str:
    """What FFmpeg says when it decodes every frame of `clip`: nothing for a clip that plays."""
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(clip), "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=False,
    ).stderr  # fmt: skip


def three_segments(base: Path) -> tuple[list[Path], float]:
    t0 = float(int(time.time()) - 7200)
    return [recorded_segment(base, "cam1", t0 + i * SEGMENT_SECONDS) for i in range(3)], t0


def listed(base: Path) -> list[Segment]:
    return scan_folder(base / "cam1", "cam1", float(SEGMENT_SECONDS))


def config_file(tmp_path: Path, base: Path) -> Path:
    path = tmp_path / "config.yaml"
    raw = {"cameras": {"cam1": {"test_pattern": True}}, "recording": {"base_directory": str(base), "segment_time": 4}}
    path.write_text(yaml.safe_dump(raw))
    return path


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def test_a_segment_deleted_after_the_clip_was_planned_is_still_in_the_clip(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    paths, t0 = three_segments(base)
    clip = check_clip("cam1", listed(base), t0, t0 + 3 * SEGMENT_SECONDS, "ffprobe")
    try:
        paths[1].unlink()  # retention, between the plan and FFmpeg reaching the piece
        out = tmp_path / "clip.mkv"
        write_clip(clip.plan, "ffmpeg", out, held=clip.held)
    finally:
        clip.close()
    assert clip.plan.gaps == ()
    assert probe(out)["frames"] == 3 * FRAMES_PER_SEGMENT
    assert decode_errors(out) == ""


def test_a_segment_gone_before_the_clip_was_planned_is_a_reported_gap(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    paths, t0 = three_segments(base)
    segments = listed(base)
    paths[1].unlink()
    clip = check_clip("cam1", segments, t0, t0 + 3 * SEGMENT_SECONDS, "ffprobe")
    clip.close()
    assert [seg.path for seg in clip.unreadable] == [paths[1]]
    assert len(clip.plan.gaps) == 1
    gap = clip.plan.gaps[0]
    assert gap.start == pytest.approx(t0 + SEGMENT_SECONDS, abs=0.2)
    assert gap.end == pytest.approx(t0 + 2 * SEGMENT_SECONDS, abs=0.2)


def test_a_segment_that_holds_less_than_the_index_says_is_shortened_and_the_rest_a_gap(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    paths, t0 = three_segments(base)
    # The index (a daemon's, from FFmpeg's segment list) said 8 s; the file holds 4.
    promised = [Segment("cam1", t0, 2 * SEGMENT_SECONDS, paths[0].stat().st_size, paths[0], True)]
    clip = check_clip("cam1", promised, t0, t0 + 2 * SEGMENT_SECONDS, "ffprobe")
    clip.close()
    assert [seg.path for seg in clip.shortened] == [paths[0]]
    assert clip.plan.gaps and clip.plan.gaps[0].start == pytest.approx(t0 + SEGMENT_SECONDS, abs=0.2)


def test_export_of_a_header_only_leftover_reports_it_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "rec"
    paths, t0 = three_segments(base)
    with paths[2].open("r+b") as leftover:  # what a SIGKILL just after a cut leaves: the header, no frame
        leftover.truncate(570)
    out = tmp_path / "clip.mp4"
    code = main(["-c", str(config_file(tmp_path, base)), "--export", "cam1", "--since", utc(t0),
                 "--until", utc(t0 + 3 * SEGMENT_SECONDS), "-o", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert f"{paths[2].name} is gone or unreadable: its time is a gap" in captured.err
    assert "gap: nothing recorded from" in captured.out
    assert probe(out)["frames"] == 2 * FRAMES_PER_SEGMENT
    assert decode_errors(out) == ""


def test_a_range_across_transcoded_and_original_segments_is_refused_naming_the_boundary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "rec"
    paths, t0 = three_segments(base)
    # The night transcoder's result: the same name, HEVC inside.
    hevc = paths[1].with_suffix(".hevc.mkv")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(paths[1]), "-c:v", "libx265", "-preset", "ultrafast",
         "-x265-params", "log-level=error", str(hevc)],
        check=True, timeout=60,
    )  # fmt: skip
    hevc.replace(paths[1])
    out = tmp_path / "clip.mp4"
    code = main(["-c", str(config_file(tmp_path, base)), "--export", "cam1", "--since", utc(t0),
                 "--until", utc(t0 + 3 * SEGMENT_SECONDS), "-o", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1
    assert f"{paths[1].name} is hevc 160x120" in err[0]
    assert "the segments before it h264 160x120" in err[0]
    assert f"export up to {time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t0 + SEGMENT_SECONDS))}" in err[0]
    assert not out.exists()
    # Each side alone exports and plays.
    before = tmp_path / "before.mkv"
    assert main(["-c", str(config_file(tmp_path, base)), "--export", "cam1", "--since", utc(t0),
                 "--until", utc(t0 + SEGMENT_SECONDS), "-o", str(before)]) == 0  # fmt: skip
    assert decode_errors(before) == ""


def test_a_range_needing_more_segments_than_can_be_held_is_refused_before_anything_opens(tmp_path: Path) -> None:
    many = [Segment("cam1", float(i), 1.0, 1, tmp_path / f"cam1_{i}.mkv") for i in range(MAX_HELD_SEGMENTS + 1)]
    with pytest.raises(ExportError, match=f"more than {MAX_HELD_SEGMENTS} in one clip"):
        HeldSegments(many)


def test_retention_leaves_the_segments_a_clip_holds_until_it_is_done(tmp_path: Path) -> None:
    from conftest import small_config

    from recorder.daemon.recorder import Recorder
    from recorder.ffmpeg.binary import find_tools

    base = tmp_path / "rec"
    paths, t0 = three_segments(base)  # two hours old
    config = small_config(base, storage={"cleanup_days": 1 / 24})  # an hour: all three are due
    recorder = Recorder(config, find_tools(config.system))  # its retention protects what clips hold
    recorder.storage.scan()
    clip = check_clip("cam1", listed(base), t0, t0 + 3 * SEGMENT_SECONDS, "ffprobe")
    try:
        report = recorder.storage.run_pass("manual")
        assert report.file_count == 0 and all(p.exists() for p in paths)
    finally:
        clip.close()
    report = recorder.storage.run_pass("manual")
    assert report.file_count == 3 and not any(p.exists() for p in paths)


def test_a_failing_probe_never_leaves_the_segments_held(tmp_path: Path) -> None:
    from recorder.storage.export import held_segment_paths

    base = tmp_path / "rec"
    _paths, t0 = three_segments(base)
    with pytest.raises(FileNotFoundError):
        check_clip("cam1", listed(base), t0, t0 + 3 * SEGMENT_SECONDS, str(tmp_path / "no-such-ffprobe"))
    assert held_segment_paths() == []
