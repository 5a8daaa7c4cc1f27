"""The original's operator commands: --validate, --detect, --stats, --cleanup, --version, --demo."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import segment_file, wait_for

from recorder.app.cli import main

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "fixtures" / "v4l2-corpus"  # published outputs; README.md there names each source
FAKE_V4L2_CTL = Path(__file__).resolve().parents[2] / "fake_v4l2_ctl.py"


def _corpus(name: str) -> str:
    """A corpus output without its `# ` source header."""
    text = (CORPUS / name).read_text()
    return text.split("# ---\n", 1)[1]


def _write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def c920(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 'device' node whose v4l2-ctl answers are a real C920's (the node itself is a stand-in file)."""
    node = tmp_path / "dev" / "video0"
    node.parent.mkdir()
    node.touch()
    replay = tmp_path / "replay"
    replay.mkdir()
    # The fake answers by node name, so the listing can name the real /dev path.
    (replay / "list-devices.txt").write_text("HD Pro Webcam C920 (usb-0000:0a:00.3-3):\n\t/dev/video0\n")
    full = _corpus("formats-logitech-c920-with-all.txt")
    (replay / "video0.info.txt").write_text(full)
    (replay / "video0.formats.txt").write_text(full)
    program = tmp_path / "v4l2-ctl"
    program.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_V4L2_CTL))} "$@"\n')
    program.chmod(0o755)
    monkeypatch.setenv("FAKE_V4L2_DIR", str(replay))
    monkeypatch.setenv("CAMERA_RECORDER_V4L2_CTL", str(program))
    return node


def test_validate_passes_a_mode_the_camera_offers(
    tmp_path: Path, c920: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write(
        tmp_path / "c.yaml",
        {
            "cameras": {
                "cam1": {"device": str(c920), "input_format": "mjpeg", "resolution": "1920x1080", "framerate": 30}
            },
            "recording": {"base_directory": str(tmp_path / "rec")},
        },
    )
    assert main(["-c", str(cfg), "--validate"]) == 0
    out = capsys.readouterr().out
    assert "offers 1920x1080@30" in out and "look ready" in out


def test_validate_names_each_problem_on_one_line(
    tmp_path: Path, c920: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = _write(
        tmp_path / "c.yaml",
        {
            "cameras": {
                "cam1": {"device": str(c920), "input_format": "mjpeg", "resolution": "1920x1080", "framerate": 60},
                "cam2": {"device": str(tmp_path / "dev" / "video9")},
                "cam3": {"file": str(tmp_path / "missing.mkv")},
            },
            "encoding": {"codec": "h264_qsv"},
            "system": {"hw_device": str(tmp_path / "dri" / "renderD128")},
            "recording": {"base_directory": str(blocker / "rec")},
        },
    )
    assert main(["-c", str(cfg), "--validate"]) == 1
    err = capsys.readouterr().err.splitlines()
    problems = [line for line in err if line.startswith("problem: ")]
    expected = [
        "cameras.cam1: 1920x1080@60 mjpeg not offered by",
        "nearest: 1920x1080@30 mjpeg",
        f"cameras.cam2.device: {tmp_path / 'dev' / 'video9'} is not present",
        f"cameras.cam3.file: {tmp_path / 'missing.mkv'} is not a readable file",
        "system.hw_device:",
        f"recording.base_directory: {blocker} is not a folder",
    ]
    for fragment in expected:
        assert sum(fragment in line for line in problems) == 1, (fragment, problems)


def test_validate_checks_a_format_asked_for_without_size_or_rate(
    tmp_path: Path, c920: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write(
        tmp_path / "c.yaml",
        {
            "cameras": {"cam1": {"device": str(c920), "input_format": "hevc"}},
            "recording": {"base_directory": str(tmp_path / "rec")},
        },
    )
    assert main(["-c", str(cfg), "--validate"]) == 1
    problems = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("problem:")]
    assert len(problems) == 1 and problems[0].startswith("problem: cameras.cam1.input_format: hevc not offered")
    assert "H264" in problems[0] and "MJPG" in problems[0]


def test_detect_json_and_human(c920: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--detect", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (device,) = data["devices"]
    assert device["path"] == "/dev/video0" and device["card"] == "HD Pro Webcam C920" and device["capture"] is True
    fourccs = [f["fourcc"] for f in device["formats"]]
    assert {"YUYV", "H264", "MJPG"} <= set(fourccs)
    assert main(["--detect"]) == 0
    human = capsys.readouterr().out
    assert "HD Pro Webcam C920" in human and "cameras:" in human and "h264" in human


def test_first_stats_before_any_recording_says_nothing_recorded_yet(tmp_path: Path) -> None:
    """A fresh install's first --stats: the recordings folder is not there yet, and that is not a fault."""
    base = tmp_path / "not-yet" / "recordings"
    cfg = _write(tmp_path / "c.yaml", {"cameras": {"cam1": {"test_pattern": True}},
                                      "recording": {"base_directory": str(base)}})  # fmt: skip
    command = [sys.executable, "-m", "recorder", "-c", str(cfg), "--stats"]
    text = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"Recordings in {base}: nothing recorded yet")
    assert f"Its filesystem ({tmp_path})" in text.stdout and "cam1" in text.stdout
    assert "not readable" not in text.stdout and text.stderr == "", "no warning for a folder not made yet"
    as_json = subprocess.run([*command, "--json"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert as_json.returncode == 0 and as_json.stderr == ""
    report = json.loads(as_json.stdout)
    assert report["nothing_recorded_yet"] is True and report["total"]["files"] == 0
    assert report["filesystem"]["path"] == str(tmp_path) and report["filesystem"]["size_bytes"] > 0
    assert not base.exists(), "--stats only looks"


def test_stats_and_cleanup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "rec"
    old = [segment_file(base, "cam1", d * 86400, 1000) for d in (40, 35)]
    recent = [segment_file(base, "cam1", 1 * 86400, 1000), segment_file(base, "cam2", 2 * 86400, 5000)]
    cfg = _write(
        tmp_path / "c.yaml",
        {
            "cameras": {"cam1": {"test_pattern": True}, "cam2": {"test_pattern": True}},
            "recording": {"base_directory": str(base)},
            "storage": {"cleanup_days": 30},
        },
    )
    assert main(["-c", str(cfg), "--stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    text = json.dumps(stats)
    assert "cam1" in text and "cam2" in text
    assert all(p.exists() for p in old + recent), "--stats only looks"
    assert main(["-c", str(cfg), "--stats"]) == 0
    assert "cam2" in capsys.readouterr().out

    assert main(["-c", str(cfg), "--cleanup", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(p.name in out for p in old) and not any(p.name in out for p in recent)
    assert all(p.exists() for p in old), "a dry run deletes nothing"

    assert main(["-c", str(cfg), "--cleanup"]) == 0
    out = capsys.readouterr().out
    assert all(p.name in out for p in old) and "max_age" in out
    assert not any(p.exists() for p in old) and all(p.exists() for p in recent)


def test_version_names_the_ffmpeg_found(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("camera-recorder, version ") and "/ffmpeg" in out


def test_demo_records_two_synthetic_cameras_and_serves_metrics(tmp_path: Path) -> None:
    from daemon_harness import free_port

    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "recorder", "--demo", "--duration", "12", "--output", str(tmp_path / "demo"),
         "--listen-address", f"127.0.0.1:{port}"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, "NOTIFY_SOCKET": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for cam in ("cam1", "cam2"):
        files = sorted((tmp_path / "demo" / cam).glob(f"{cam}_*.mkv"))
        assert len(files) >= 2, files  # 10 s segments: one complete, one finalized at the stop
    assert f"127.0.0.1:{port}/metrics" in result.stderr
    assert "Demo recordings in" in result.stdout
    # Issue 21: the demo says where the status page is, not only the metrics, and how to move off a taken port.
    assert f"status page on http://127.0.0.1:{port}/" in result.stderr
    banner = result.stdout.splitlines()[:4]
    assert banner[1].strip().startswith(f"status page: http://127.0.0.1:{port}/"), banner
    assert banner[2].strip() == f"metrics:     http://127.0.0.1:{port}/metrics", banner
    assert "--listen-address" in banner[3]


def test_a_wildcard_listen_address_is_shown_as_this_hosts_name() -> None:
    import socket

    from recorder.app.demo import status_page_url

    assert status_page_url("http", "0.0.0.0:9100") == f"http://{socket.gethostname()}:9100/"
    assert status_page_url("https", "127.0.0.1:9101") == "https://127.0.0.1:9101/"
    assert status_page_url("http", "[::1]:9100") == "http://[::1]:9100/"


def test_logs_carry_the_camera_and_no_second_timestamp_under_journald(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from recorder.app.cli import setup_logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored after the test
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup_logging("INFO")
    logging.LoggerAdapter(logging.getLogger("recorder.supervisor"), {"camera": "cam7"}).warning("stalled")
    logging.getLogger("recorder.daemon").info("not about a camera")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["WARNING [cam7] recorder.supervisor: stalled", "INFO [-] recorder.daemon: not about a camera"]
    monkeypatch.delenv("JOURNAL_STREAM")
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    setup_logging("INFO")
    logging.getLogger("recorder.daemon").info("on a terminal")
    line = capsys.readouterr().err.strip()
    assert line.endswith("INFO [-] recorder.daemon: on a terminal") and line[:4].isdigit()


def test_logfmt_and_json_as_prometheus_writes_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from recorder.app.cli import setup_logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored after the test
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # structured formats keep ts= even under journald
    camera_log = logging.LoggerAdapter(logging.getLogger("recorder.supervisor"), {"camera": "cam7"})
    setup_logging("DEBUG", "logfmt")
    camera_log.warning('FFmpeg said "No space left" = full')
    logging.getLogger("recorder.daemon").debug("plain")
    first, second = capsys.readouterr().err.splitlines()
    assert re.fullmatch(
        r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=warn camera=cam7 logger=recorder.supervisor "
        r'msg="FFmpeg said \\"No space left\\" = full"',
        first,
    ), first
    assert second.endswith(" level=debug logger=recorder.daemon msg=plain")
    setup_logging("INFO", "json")
    camera_log.error("stalled")
    record = json.loads(capsys.readouterr().err)
    assert (record["level"], record["camera"], record["logger"], record["msg"]) == (
        "error", "cam7", "recorder.supervisor", "stalled"
    )  # fmt: skip
    assert record["ts"].endswith("Z")


def test_log_flags_in_the_ecosystem_spelling_and_the_old_one(tmp_path: Path) -> None:
    from daemon_harness import Daemon, write_config

    config = write_config(tmp_path / "config.yaml", tmp_path / "rec")
    daemon = Daemon(config, extra_args=("--log.format", "json", "--log.level", "debug"))
    try:
        wait_for(lambda: daemon.log().count("\n") >= 3, timeout=15, what="some log lines")
    finally:
        assert daemon.stop() == 0
    records = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    assert records and {r["level"] for r in records} <= {"debug", "info", "warn", "error"}
    assert "debug" in {r["level"] for r in records}, "--log.level debug is honoured"
    bad_format = [sys.executable, "-m", "recorder", "--log-level", "WARNING", "--log.format", "xml", "--version"]
    usage = subprocess.run(bad_format, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2 and "--log.format" in usage.stderr
    old = subprocess.run([sys.executable, "-m", "recorder", "--log-level", "WARNING", "--version"],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert old.returncode == 0


def test_an_unusable_recordings_folder_is_one_line_at_validate_and_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write(
        tmp_path / "c.yaml",
        {"cameras": {"cam1": {"test_pattern": True}}, "recording": {"base_directory": "/proc/camera-recorder/rec"}},
    )
    assert main(["-c", str(cfg), "--validate"]) == 1
    problems = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("problem:")]
    assert (
        problems == [problems[0]]
        and "recording.base_directory: cannot write in /proc/camera-recorder/rec (nearest existing folder: /proc)"
        in problems[0]
    )
    # At start (issue 21): one line naming the folder and the fix, and the daemon stays up in storage_error
    # (it used to exit 1, and systemd restarted it every 2 s); stopped, it exits 0.
    from daemon_harness import Daemon

    daemon = Daemon(cfg)
    try:
        wait_for(lambda: daemon.value("camera_recorder_camera_state", camera="cam1", state="storage_error") == 1,
                 timeout=15, what="storage_error")  # fmt: skip
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
    log = daemon.log()
    assert "Traceback" not in log
    errors = [ln for ln in log.splitlines() if "recording.base_directory" in ln]
    assert len(errors) == 1 and (
        "recording.base_directory: cannot create /proc/camera-recorder/rec: No such file or directory; "
        "every camera waits in storage_error until it can be written" in errors[0]
    )


def test_one_shot_commands_report_config_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write(
        tmp_path / "c.yaml",
        {"cameras": {"cam1": {"test_pattern": True}}, "recording": {"base_directory": str(tmp_path)}, "web_port": 8080},
    )
    assert main(["-c", str(cfg), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: web_port: the web interface is gone") == 1
