"""`--export`: clips across segment boundaries and gaps from real FFmpeg-recorded segments, under any TZ."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from conftest import probe

from recorder.app.cli import main
from recorder.footage.recordings import Segment
from recorder.storage.export import ExportError, plan_export

SEGMENT_SECONDS = 4
UTC = timezone.utc


def recorded_segment(base: Path, camera: str, start: float, seconds: int = SEGMENT_SECONDS) -> Path:
    """A real H.264 segment named as the recorder names them, one keyframe a second, `seconds` long."""
    stamp = datetime.fromtimestamp(start, UTC).strftime("%Y%m%d_%H%M%S")
    path = base / camera / f"{camera}_{stamp}.mkv"
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi",
         "-i", "testsrc2=size=160x120:rate=10", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
         "-g", "10", "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """cam1: three contiguous segments, an 8 s gap, two more. Returns (base, start of the first)."""
    base = tmp_path_factory.mktemp("rec")
    t0 = float(int(time.time()) - 3600)
    for offset in (0, 4, 8, 20, 24):
        recorded_segment(base, "cam1", t0 + offset)
    return base, t0


@pytest.fixture(params=["UTC0", "Europe/Berlin", "America/New_York"])
def any_tz(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def _config(tmp_path: Path, base: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {"cameras": {"cam1": {"test_pattern": True}}, "recording": {"base_directory": str(base), "segment_time": 4}}
        )
    )
    return path


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def test_export_joins_segments_and_reports_the_gap(
    recordings: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str], any_tz: str
) -> None:
    base, t0 = recordings
    out = tmp_path / "clip.mp4"
    code = main(["-c", str(_config(tmp_path, base)), "--export", "cam1", "--since", _utc(t0 + 2),
                 "--until", _utc(t0 + 26), "-o", str(out)])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    clip = probe(out)
    assert clip["ok"] and clip["codec"] == "h264"
    # 2..12 and 20..26 are recorded: 16 s, cut at keyframes (one a second) and not re-encoded.
    assert 15.0 <= clip["duration"] <= 18.0, clip
    assert f"wrote {out}: camera cam1, 5 segment(s)" in stdout
    assert "[read as UTC]" in stdout
    gap = f"gap: nothing recorded from {datetime.fromtimestamp(t0 + 12).astimezone():%Y-%m-%d %H:%M:%S %Z}"
    assert gap in stdout and "(8 s); skipped" in stdout


def test_export_reads_local_time_and_says_so(
    recordings: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str], any_tz: str
) -> None:
    base, t0 = recordings
    out = tmp_path / "clip.mkv"
    since = datetime.fromtimestamp(t0 + 1).strftime("%Y-%m-%d %H:%M:%S")  # this TZ's wall clock, no zone
    until = datetime.fromtimestamp(t0 + 11).strftime("%Y-%m-%d %H:%M:%S")
    code = main(["-c", str(_config(tmp_path, base)), "--export", "cam1", "--since", since, "--until", until,
                 "-o", str(out)])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert 9.5 <= probe(out)["duration"] <= 12.0
    assert "[read as local time (" in stdout and "no gaps: the clip is continuous" in stdout


def test_export_of_a_range_with_nothing_recorded_fails_and_writes_nothing(
    recordings: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, t0 = recordings
    out = tmp_path / "clip.mp4"
    code = main(["-c", str(_config(tmp_path, base)), "--export", "cam1", "--since", _utc(t0 - 600),
                 "--until", _utc(t0 - 300), "-o", str(out)])  # fmt: skip
    assert code == 1
    assert "camera cam1 recorded nothing in the asked range" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--export", "cam9", "--since", "-1h", "-o", "x.mp4"], "no camera 'cam9' in the config; cameras: cam1"),
        (["--export", "cam1", "--since", "soon", "-o", "x.mp4"], "cannot read 'soon' as a time"),
        (["--export", "cam1", "--since", "-1h", "-o", "x.avi"], "write the clip as .mp4 or .mkv"),
    ],
)
def test_export_mistakes_are_one_line(
    recordings: tuple[Path, float],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    base, _ = recordings
    args = [a if a != "-1h" else "--since=-1h" for a in args]
    args = [a for i, a in enumerate(args) if not (a == "--since" and args[i + 1].startswith("--since="))]
    code = main(["-c", str(_config(tmp_path, base)), *args])
    assert code == 1
    assert message in capsys.readouterr().err


def test_export_needs_since_and_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--export", "cam1", "-o", "x.mp4"]) == 2
    assert "--export needs --since TIME and -o FILE" in capsys.readouterr().err
    assert main(["--since=-1h", "--validate"]) == 2


def test_an_existing_output_is_never_overwritten(recordings: tuple[Path, float], tmp_path: Path) -> None:
    base, t0 = recordings
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"precious")
    code = main(["-c", str(_config(tmp_path, base)), "--export", "cam1", "--since", _utc(t0),
                 "--until", _utc(t0 + 4), "-o", str(out)])  # fmt: skip
    assert code == 1
    assert out.read_bytes() == b"precious"


def test_plan_cuts_inside_the_first_and_last_segment_only() -> None:
    segs = [Segment("cam1", 100.0 + i * 10, 10.0, 1, Path(f"/r/{i}.mkv")) for i in (0, 1, 2, 5)]
    plan = plan_export("cam1", segs, 105.0, 155.0)
    assert [(p.segment.path.name, p.inpoint, p.outpoint) for p in plan.pieces] == [
        ("0.mkv", 5.0, None),
        ("1.mkv", None, None),
        ("2.mkv", None, None),
        ("5.mkv", None, 5.0),
    ]
    assert [(g.start, g.end) for g in plan.gaps] == [(130.0, 150.0)]
    assert plan.recorded_seconds == 30.0
    assert "inpoint 5.000" in plan.concat_list() and "outpoint 5.000" in plan.concat_list()
    with pytest.raises(ExportError):
        plan_export("cam1", segs, 155.0, 105.0)


def test_concat_list_quotes_paths() -> None:
    plan = plan_export("cam1", [Segment("cam1", 0.0, 10.0, 1, Path("/r/it's.mkv"))], 0.0, 10.0)
    assert "file '/r/it'\\''s.mkv'" in plan.concat_list()


# ---------------------------------------------------------------------------------------------
# Progress and the summary (issue 21)


def test_export_shows_progress_and_reports_the_clips_real_duration(
    recordings: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a terminal (pytest's capture): plain progress lines from FFmpeg's own -progress on stderr; the
    summary's duration is the written clip's, as ffprobe (and a player) read it."""
    base, t0 = recordings
    out = tmp_path / "clip.mp4"
    code = main(["-c", str(_config(tmp_path, base)), "--export", "cam1", "--since", _utc(t0 + 2),
                 "--until", _utc(t0 + 26), "-o", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured
    progress = [line for line in captured.err.splitlines() if line.startswith("exporting cam1 to clip.mp4: ")]
    assert progress and "100% (" in progress[-1] and "copied" in progress[-1], captured.err
    assert "\r" not in captured.err and "\x1b[" not in captured.err
    clip = probe(out)
    summary = captured.out.splitlines()[0]
    assert f", {clip['duration']:.1f} s, {out.stat().st_size} bytes (" in summary
    assert "MiB)" in summary or "KiB)" in summary


def test_export_on_a_terminal_draws_a_bar_and_with_json_logs_writes_records(
    recordings: tuple[Path, float], tmp_path: Path
) -> None:
    import json
    import os
    import pty
    import sys

    base, t0 = recordings
    argv = [sys.executable, "-m", "recorder", "-c", str(_config(tmp_path, base)), "--export", "cam1",
            "--since", _utc(t0 + 2), "--until", _utc(t0 + 10)]  # fmt: skip
    repo = Path(__file__).resolve().parents[3]
    main_fd, terminal = pty.openpty()
    try:
        done = subprocess.run([*argv, "-o", str(tmp_path / "a.mkv")], cwd=repo, stdout=subprocess.PIPE,
                              stderr=terminal, timeout=120, check=False)  # fmt: skip
        os.close(terminal)
        drawn = b""
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(main_fd)
    assert done.returncode == 0, drawn
    text = drawn.decode()
    assert "\r\x1b[K[" in text and "] exporting cam1 to a.mkv: 100% (" in text, text
    as_json = subprocess.run([*argv, "-o", str(tmp_path / "b.mkv"), "--log.format", "json"], cwd=repo,
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    records = [json.loads(line) for line in as_json.stderr.splitlines() if line.strip()]
    assert any("exporting cam1 to b.mkv: 100%" in record["msg"] for record in records), records
    assert "\r" not in as_json.stderr


def test_a_removed_cameras_footage_is_exported_and_a_symlinked_folder_is_not(
    recordings: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The config names only cam1; `porch` was removed from it, its segments are still on disk.
    base, t0 = recordings
    porch = [recorded_segment(base, "porch", t0 + offset) for offset in (0, 4)]
    (base / "linked").symlink_to(porch[0].parent, target_is_directory=True)
    try:
        out = tmp_path / "porch.mp4"
        code = main(["-c", str(_config(tmp_path, base)), "--export", "porch", "--since", _utc(t0),
                     "--until", _utc(t0 + 8), "-o", str(out)])  # fmt: skip
        assert code == 0, capsys.readouterr()
        assert f"wrote {out}: camera porch, 2 segment(s)" in capsys.readouterr().out
        assert probe(out)["ok"]
        code = main(["-c", str(_config(tmp_path, base)), "--export", "linked", "--since", _utc(t0),
                     "-o", str(tmp_path / "linked.mp4")])  # fmt: skip
        assert code == 1
        err = capsys.readouterr().err
        assert "no camera 'linked' in the config" in err and "not in the config: porch" in err
    finally:
        (base / "linked").unlink()
        for p in porch:
            p.unlink()
        porch[0].parent.rmdir()
