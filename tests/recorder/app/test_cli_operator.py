"""The rough edges a new user hits: --detect with no camera, --convert-config dropping cameras, the demo's
pictures, and a supervisor's clean stop."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
from pathlib import Path

import pytest

from recorder.app import demo_config as demo
from recorder.app.cli import NO_CAMERA_CHECKLIST, demo_config, main
from recorder.config import SourceKind
from recorder.ffmpeg.presets import build_command

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_detect_with_no_camera_says_what_to_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAMERA_RECORDER_V4L2_CTL", "/bin/true")  # lists nothing, as on a box with no camera
    monkeypatch.delenv("CAMERA_RECORDER_CONFIG", raising=False)
    assert main(["--detect"]) == 0
    out = capsys.readouterr().out
    assert "No V4L2 video devices found." in out and NO_CAMERA_CHECKLIST in out
    for hint in ("plugged in", "uvcvideo", "`video` group", "/dev/v4l/by-id"):
        assert hint in out


def test_convert_to_legacy_refuses_to_drop_cameras_without_force(capsys: pytest.CaptureFixture[str]) -> None:
    source = str(CONFIGS / "modern.yaml")
    assert main(["--convert-config", source, "--to", "legacy"]) == 1
    captured = capsys.readouterr()
    dropped = [line for line in captured.out.splitlines() if line.startswith("# dropped camera ")]
    assert "# dropped camera garage: a url source has no legacy form" in dropped
    assert "pass --force to accept that" in captured.err and "garage" in captured.err
    assert main(["--convert-config", source, "--to", "legacy", "--force"]) == 0
    assert "# dropped camera garage: a url source has no legacy form" in capsys.readouterr().out


def test_convert_to_legacy_without_dropped_cameras_needs_no_force(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--convert-config", str(CONFIGS / "legacy-roundtrip.yaml"), "--to", "legacy"]) == 0
    assert "# dropped camera" not in capsys.readouterr().out


def test_force_goes_with_convert_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--force", "--validate"]) == 2
    assert "--force goes with --convert-config" in capsys.readouterr().err


def _demo_cameras(tmp_path: Path) -> list:
    args = argparse.Namespace(output=str(tmp_path / "demo"), config=None)
    return list(demo_config(args).cameras)


def test_the_demo_cameras_have_their_own_titled_pattern(tmp_path: Path) -> None:
    cameras = _demo_cameras(tmp_path)
    assert [c.source for c in cameras] == [SourceKind.TEST_PATTERN] * 2
    left, right = (c.location for c in cameras)
    assert left.split("=")[0] != right.split("=")[0]  # different lavfi sources
    assert "drawtext=" in left and "Demo left (cam1)" in left and "gmtime" in left
    assert "Demo right (cam2)" in right
    # The graph is what FFmpeg is given.
    argv = build_command(cameras[0], demo_config(argparse.Namespace(output=str(tmp_path), config=None)), "ffmpeg").argv
    assert argv[argv.index("-i") + 1] == left


def test_the_demo_pictures_differ_and_carry_text(tmp_path: Path) -> None:
    digests = []
    for camera in _demo_cameras(tmp_path):
        picture = tmp_path / f"{camera.id}.png"
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i", camera.location,
             "-frames:v", "1", str(picture)],
            check=True, timeout=60,
        )  # fmt: skip
        digests.append(hashlib.sha256(picture.read_bytes()).hexdigest())
    assert digests[0] != digests[1]


def test_without_drawtext_the_demo_falls_back_to_plain_patterns(tmp_path: Path) -> None:
    camera = _demo_cameras(tmp_path)[0]
    assert demo.demo_pattern(camera, 0, "/bin/false", demo.find_font()) == "smptehdbars=size=640x360:rate=15"
    assert demo.demo_pattern(camera, 1, "ffmpeg", None) == "testsrc2=size=640x360:rate=15"
    assert "no drawtext filter" in (demo.describe_text_support("/bin/false") or "")


def test_a_test_pattern_without_location_is_the_plain_testsrc2(tmp_path: Path) -> None:
    from recorder.config import parse_config

    config = parse_config({"cameras": {"cam1": {"test_pattern": True, "resolution": "320x240", "framerate": 5}}})
    argv = build_command(config.cameras[0], config, "ffmpeg").argv
    assert argv[argv.index("-i") + 1] == "testsrc2=size=320x240:rate=5"
