"""The daemon as a real process: signals, segments left behind, and no FFmpeg left over."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import probe, wait_for
from daemon_harness import Daemon, alive, write_config

from recorder.config import Config


def _segments(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*.mkv"))


def test_sigterm_finalizes_every_segment_and_leaves_no_ffmpeg(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    daemon = Daemon(write_config(tmp_path / "config.yaml", base, recording={"segment_time": 60}))
    try:
        wait_for(lambda: len(daemon.ffmpeg_pids()) == 2, what="two FFmpeg processes")
        for cam in ("cam1", "cam2"):  # each camera's own count: on a loaded machine one may start later
            wait_for(
                lambda cam=cam: (daemon.value("camera_recorder_frames_total", camera=cam) or 0) > 50, what="frames"
            )
        pids = daemon.ffmpeg_pids()
    finally:
        code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.log()
    assert not any(alive(pid) for pid in pids)
    files = _segments(base)
    assert {f.parent.name for f in files} == {"cam1", "cam2"}
    for f in files:
        result = probe(f)
        # Finalized files carry their duration in the header: an unfinished MKV has none.
        assert result["ok"] and result["frames"] > 50 and result["duration"] > 2, (f, result)
    assert "daemon stopping" in daemon.log()


def test_sigint_stops_like_sigterm(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    wait_for(lambda: len(daemon.ffmpeg_pids()) == 2, what="two FFmpeg processes")
    pids = daemon.ffmpeg_pids()
    assert daemon.stop(signal.SIGINT) == 0
    assert not any(alive(pid) for pid in pids)


def test_sigkill_of_the_daemon_leaves_no_ffmpeg(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    try:
        wait_for(lambda: len(daemon.ffmpeg_pids()) == 2, what="two FFmpeg processes")
        pids = daemon.ffmpeg_pids()
    finally:
        daemon.kill()
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=5, what="FFmpeg to die with the daemon")


def test_one_camera_failing_never_restarts_the_other(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    try:
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1, what="cam1")
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam2") == 1, what="cam2")
        by_camera = daemon.ffmpeg_pid_by_camera()
        os.kill(by_camera["cam1"], signal.SIGKILL)
        wait_for(
            lambda: daemon.value("camera_recorder_ffmpeg_restarts_total", camera="cam1", reason="crashed") == 1,
            what="cam1's restart",
        )
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1, what="cam1 back")
        assert alive(by_camera["cam2"])
        assert (
            sum(
                daemon.value("camera_recorder_ffmpeg_restarts_total", camera="cam2", reason=r) or 0
                for r in ("exited", "crashed", "stall")
            )
            == 0
        )
    finally:
        assert daemon.stop() == 0


# ---------------------------------------------------------------------------------------------
# /-/healthy follows the supervisors' heartbeat


def test_healthy_fails_naming_the_camera_whose_supervisor_is_wedged(tmp_path: Path) -> None:
    import json
    import threading

    from conftest import small_config
    from daemon_harness import request

    from exporter.server import ExporterServer
    from recorder.daemon.recorder import Recorder
    from recorder.ffmpeg.binary import find_tools
    from recorder.ffmpeg.presets import FFmpegCommand
    from recorder.ffmpeg.process import spawn_ffmpeg

    release = threading.Event()
    wedged = threading.Event()

    def launcher(command: FFmpegCommand):  # type: ignore[no-untyped-def]
        if command.camera_id == "stuck":
            wedged.set()
            release.wait(30)  # a start that never returns, as a hung fork or device open would
        return spawn_ffmpeg(command)

    cam = {"test_pattern": True, "resolution": "160x120", "framerate": 25}
    config = small_config(
        tmp_path / "rec", cameras={"fine": cam, "stuck": cam}, exporter={"listen_address": "127.0.0.1:0"}
    )
    recorder = Recorder(config, find_tools(config.system), launcher=launcher, heartbeat_stale_after=1.0)
    server = ExporterServer(config.exporter, recorder)
    server.start()
    url = f"http://127.0.0.1:{server.port}/-/healthy"
    try:
        assert request(url)[0] == 200  # before the supervisors start nothing can be stuck
        recorder.start()
        wait_for(wedged.is_set, what="the stuck camera's start")
        _, body, headers = wait_for(lambda: (r := request(url)) and r[0] == 503 and r, what="/-/healthy to fail")
        assert json.loads(body) == {"healthy": False, "stuck": ["stuck"]}
        assert headers["Content-Type"] == "application/json"
        release.set()
        wait_for(lambda: request(url)[0] == 200, what="/-/healthy once the supervisor goes round again")
        assert request(url)[1] == "Healthy\n"
    finally:
        release.set()
        assert recorder.stop()
        server.stop()


# ---------------------------------------------------------------------------------------------
# SIGHUP reloads the configuration; SIGUSR1 logs each camera's status


def _pid_by_camera(daemon: Daemon) -> dict[str, int]:
    return daemon.ffmpeg_pid_by_camera()


def _recording(daemon: Daemon, *cameras: str) -> bool:
    return all(daemon.value("camera_recorder_camera_recording", camera=cam) == 1 for cam in cameras)


def _reload(daemon: Daemon, successes_before: float) -> None:
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: (daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0) > successes_before,
        timeout=30,
        what=f"the reload to succeed\n{daemon.log()}",
    )


def _cameras(**changes: dict[str, object]) -> dict[str, dict[str, object]]:
    cameras: dict[str, dict[str, object]] = {
        "cam1": {"test_pattern": True, "resolution": "160x120", "framerate": 25, "name": "Left"},
        "cam2": {"test_pattern": True, "resolution": "160x120", "framerate": 25, "name": "Right"},
    }
    for cam, change in changes.items():
        cameras[cam] = {**cameras.get(cam, {}), **change}
    return cameras


def test_sighup_restarts_only_the_changed_camera_and_never_cuts_the_others_segment(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    path = write_config(tmp_path / "config.yaml", base, recording={"segment_time": 300})
    daemon = Daemon(path)
    reloaded_at = time.monotonic()
    try:
        wait_for(lambda: _recording(daemon, "cam1", "cam2"), what="both cameras recording")
        assert daemon.value("camera_recorder_config_last_reload_successful") == 1
        loaded_at = daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds")
        assert loaded_at == daemon.value("camera_recorder_start_time_seconds")
        before = _pid_by_camera(daemon)
        (open_segment,) = _segments(base / "cam1")
        write_config(path, base, recording={"segment_time": 300}, cameras=_cameras(cam2={"framerate": 15}))
        reloaded_at = time.monotonic()
        _reload(daemon, loaded_at or 0)
        wait_for(lambda: _recording(daemon, "cam2") and _pid_by_camera(daemon).get("cam2"), what="cam2 back")
        after = _pid_by_camera(daemon)
        assert after["cam1"] == before["cam1"], "the unchanged camera's FFmpeg was restarted"
        assert after["cam2"] != before["cam2"] and not alive(before["cam2"])
        assert daemon.value("camera_recorder_configured_fps", camera="cam2") == 15
        frames = daemon.value("camera_recorder_frames_total", camera="cam1") or 0
        wait_for(lambda: (daemon.value("camera_recorder_frames_total", camera="cam1") or 0) > frames + 25, what="more")
        # The log says what changed (it once said only "restarted cam2 (settings changed)").
        assert "configuration reloaded from" in daemon.log() and "restarted cam2 (framerate changed)" in daemon.log()
        assert "reload: restarted cam2: framerate changed" in daemon.log()
        assert "recording -> stopped (reload: framerate changed)" in daemon.log()
        restarts = "camera_recorder_ffmpeg_restarts_total"
        assert daemon.value(restarts, camera="cam2", reason="config") == 1
        assert daemon.value(restarts, camera="cam1", reason="config") == 0
    finally:
        code = daemon.stop()
        kept_for = time.monotonic() - reloaded_at
    assert code == 0, daemon.log()
    # cam1 still has its one segment, which spans the reload: it was never cut.
    assert _segments(base / "cam1") == [open_segment]
    result = probe(open_segment)
    assert result["ok"] and result["duration"] >= kept_for - 1, (result, kept_for)
    # cam2's first FFmpeg finalized its segment before the second started a new one.
    cam2_files = _segments(base / "cam2")
    assert len(cam2_files) == 2 and all(probe(f)["ok"] and probe(f)["duration"] > 0 for f in cam2_files)


def test_sighup_with_an_invalid_config_keeps_recording_with_the_old_one(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    path = write_config(tmp_path / "config.yaml", base)
    daemon = Daemon(path)
    try:
        wait_for(lambda: _recording(daemon, "cam1", "cam2"), what="both cameras recording")
        loaded_at = daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0
        before = _pid_by_camera(daemon)
        write_config(path, base, cameras=_cameras(cam1={"framerate": "sixty"}))
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: daemon.value("camera_recorder_config_last_reload_successful") == 0, what="the failed reload")
        log = daemon.log()
        assert f"reload: {path}: cameras.cam1.framerate: expected a positive integer, got 'sixty'" in log
        assert "still running the previous one" in log
        assert daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") == loaded_at
        assert _pid_by_camera(daemon) == before and daemon.proc.poll() is None
        # Fixed: the next SIGHUP succeeds, and nothing needed a restart.
        write_config(path, base)
        _reload(daemon, loaded_at)
        assert daemon.value("camera_recorder_config_last_reload_successful") == 1
        assert _pid_by_camera(daemon) == before
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_sighup_starts_added_cameras_and_stops_removed_ones(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    path = write_config(tmp_path / "config.yaml", base)
    daemon = Daemon(path)
    try:
        wait_for(lambda: _recording(daemon, "cam1", "cam2"), what="both cameras recording")
        loaded_at = daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0
        before = _pid_by_camera(daemon)
        cameras = _cameras(cam3={"test_pattern": True, "resolution": "160x120", "framerate": 25})
        del cameras["cam2"]
        write_config(path, base, cameras=cameras)
        _reload(daemon, loaded_at)
        wait_for(lambda: _recording(daemon, "cam3"), what="cam3 recording")
        assert not alive(before["cam2"])
        assert daemon.value("camera_recorder_camera_recording", camera="cam2") is None  # gone from /metrics
        assert _pid_by_camera(daemon)["cam1"] == before["cam1"]
        # The new camera's segments are accounted (and so covered by retention).
        wait_for(
            lambda: (daemon.value("camera_recorder_recordings_files", camera="cam3") or 0) >= 1, what="cam3's files"
        )
        status, body, _ = daemon.get("/-/ready")
        assert status == 200 and '"cam2"' not in body
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert all(probe(f)["ok"] for f in _segments(base / "cam2"))  # cam2 finalized its last segment


def test_sigusr1_logs_each_cameras_status_and_keeps_recording(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    try:
        wait_for(lambda: _recording(daemon, "cam1", "cam2"), what="both cameras recording")
        before = _pid_by_camera(daemon)
        daemon.proc.send_signal(signal.SIGUSR1)
        for cam in ("cam1", "cam2"):
            wait_for(
                lambda cam=cam: (
                    f"[{cam}] recorder.daemon: status: recording, FFmpeg pid {before[cam]}," in daemon.log()
                ),
                what=f"{cam}'s status line",
            )
        assert "received SIGUSR1" in daemon.log()
        assert daemon.proc.poll() is None and _pid_by_camera(daemon) == before
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_a_reload_tells_systemd_it_is_reloading_then_ready(tmp_path: Path) -> None:
    import socket

    from conftest import small_config

    from recorder.config import ConfigError
    from recorder.daemon.recorder import Recorder
    from recorder.daemon.sdnotify import Notifier
    from recorder.ffmpeg.binary import find_tools

    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    config = small_config(tmp_path / "rec")
    loads = [config, ConfigError(["cameras.cam1.framerate: expected a positive integer, got 'sixty'"], "x.yaml")]

    def loader() -> Config:
        result = loads.pop(0)
        if isinstance(result, ConfigError):
            raise result
        return result

    recorder = Recorder(config, find_tools(config.system), notifier=Notifier({"NOTIFY_SOCKET": str(path)}),
                        config_loader=loader)  # fmt: skip
    try:
        recorder.start()
        assert sock.recv(4096).decode().startswith("READY=1")
        for expected in (True, False):  # an unchanged file, then an invalid one: both end in READY=1
            assert recorder.reload() is expected
            reloading = sock.recv(4096).decode().splitlines()
            assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
            assert sock.recv(4096).decode().startswith("READY=1")
        assert recorder.snapshot().config_reload_successful is False
    finally:
        assert recorder.stop()
        sock.close()


def test_a_reload_keeps_what_others_hold_current_and_the_exporter_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The webhook holds recorder.storage from the start: after a reload re-reads the disk it must see the
    new accounting (a camera added). Exporter settings are set up once: a change waits for a restart."""
    from collections import Counter

    from conftest import small_config

    from exporter.server import build_registry
    from recorder.daemon.recorder import Recorder
    from recorder.ffmpeg.binary import find_tools

    cam = {"test_pattern": True, "resolution": "160x120", "framerate": 25}
    config = small_config(tmp_path / "rec", cameras={"cam1": cam})
    added = small_config(
        tmp_path / "rec",
        cameras={"cam1": cam, "cam3": cam},
        exporter={"listen_address": "127.0.0.1:9999"},
        supervisor={"stall_timeout": 7},
    )
    recorder = Recorder(config, find_tools(config.system), config_loader=lambda: added)
    held = recorder.storage  # what ExporterServer hands the webhook
    registry = build_registry(recorder, Counter())  # built once at start, as the server does
    try:
        recorder.start()
        assert set(held.snapshot().cameras) == {"cam1"}
        assert recorder.reload()
        assert set(held.snapshot().cameras) == {"cam1", "cam3"}
        assert held.alive
        assert recorder.config.exporter == config.exporter
        assert "reload: exporter settings changed; they take effect when the daemon restarts" in caplog.text
        # The gauges alerts compare against follow the reload, and the new camera has its codec.
        assert registry.get_sample_value("camera_recorder_stall_timeout_seconds", {"camera": "cam3"}) == 7
        info = {"camera": "cam3", "name": "cam3", "source": "test_pattern", "codec": "libx264", "container": "mkv"}
        assert registry.get_sample_value("camera_recorder_camera_info", info) == 1
        wait_for(lambda: recorder.snapshot().ready, what="both cameras recording")
    finally:
        assert recorder.stop()
