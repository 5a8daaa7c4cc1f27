"""FFmpeg's version: probed with a timeout, in the background, and again while it is unknown."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from conftest import small_config, wait_for
from daemon_harness import Daemon, alive, write_config

from exporter.server import build_registry
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import FFmpegTools, FFmpegVersion, ffmpeg_version

FIXED_VERSION = "9.9.9-fixed"


def _fake_ffmpeg(folder: Path) -> tuple[Path, Path, Path]:
    """An FFmpeg stand-in that hangs on -version until `fixed` exists, and records as the real one otherwise.

    The hanging probe writes its pid (the `sleep` it becomes) to `probe_pid`.
    """
    fixed = folder / "fixed"
    probe_pid = folder / "probe.pid"
    script = folder / "ffmpeg"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        "  *' -version '*)\n"
        f"    if [ -e {fixed} ]; then echo 'ffmpeg version {FIXED_VERSION} Copyright (c) the test'; exit 0; fi\n"
        f"    echo $$ > {probe_pid}.tmp && mv {probe_pid}.tmp {probe_pid}\n"
        "    exec sleep 1000 ;;\n"
        "esac\n"
        'exec ffmpeg "$@"\n'
    )
    script.chmod(0o755)
    return script, fixed, probe_pid


def _probe_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def test_a_hanging_ffmpeg_is_killed_after_the_timeout_and_asked_again(tmp_path: Path) -> None:
    fake, fixed, probe_pid = _fake_ffmpeg(tmp_path)
    version = FFmpegVersion(str(fake), timeout=0.5, retry_every=0.3)
    version.start()
    try:
        first = wait_for(lambda: _probe_pid(probe_pid), what="the first probe")
        assert version.value == "unknown"
        wait_for(lambda: not alive(first), timeout=5, what="the hung probe to be killed at its timeout")
        second = wait_for(lambda: (pid := _probe_pid(probe_pid)) != first and pid, what="a second probe")
        assert version.value == "unknown"
        fixed.touch()
        wait_for(lambda: version.value == FIXED_VERSION, timeout=5, what="the version once the binary is fixed")
        wait_for(lambda: not alive(second), timeout=5, what="the second hung probe to be gone")
    finally:
        version.stop()


def test_an_unknown_version_is_not_remembered(tmp_path: Path) -> None:
    fake, fixed, _ = _fake_ffmpeg(tmp_path)
    assert ffmpeg_version(str(fake), timeout=0.3) == "unknown"
    fixed.touch()
    assert ffmpeg_version(str(fake), timeout=0.3) == FIXED_VERSION


def _build_info_version(recorder: Recorder) -> str | None:
    registry = build_registry(recorder, Counter())
    for family in registry.collect():
        if family.name == "camera_recorder_build":
            return family.samples[0].labels["ffmpeg_version"]
    return None


def test_build_info_follows_a_binary_fixed_while_the_daemon_runs(tmp_path: Path) -> None:
    fake, fixed, probe_pid = _fake_ffmpeg(tmp_path)
    config = small_config(tmp_path / "rec")
    recorder = Recorder(
        config,
        FFmpegTools(str(fake), "ffprobe"),
        ffmpeg_version=lambda path: FFmpegVersion(path, timeout=0.3, retry_every=0.2),
    )
    recorder.start()
    try:
        wait_for(lambda: _probe_pid(probe_pid), what="the probe")
        assert _build_info_version(recorder) == "unknown"
        fixed.touch()
        wait_for(lambda: _build_info_version(recorder) == FIXED_VERSION, timeout=5, what="build_info's new version")
    finally:
        assert recorder.stop()


def test_a_hanging_ffmpeg_does_not_hold_up_recording(tmp_path: Path) -> None:
    """The daemon records while the version probe still hangs (it used to wait up to 10 s first)."""
    fake, _, probe_pid = _fake_ffmpeg(tmp_path)
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec", system={"ffmpeg": str(fake)}))
    try:
        pid = wait_for(lambda: _probe_pid(probe_pid), what="the version probe to start")
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1, what="recording")
        # Recording began while the probe was still hanging: the start never waited for it.
        assert alive(pid), "the probe had already timed out: the start waited for it"
        info = [k for k in daemon.samples() if k[0] == "camera_recorder_build_info"]
        assert dict(info[0][1])["ffmpeg_version"] == "unknown"
    finally:
        assert daemon.stop() == 0
    wait_for(lambda: not alive(pid), timeout=5, what="the hung probe to go with the daemon")
