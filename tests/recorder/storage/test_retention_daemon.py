"""Retention inside the running daemon, on a real small filesystem: pressure deletes, or pauses."""

from __future__ import annotations

from pathlib import Path

from conftest import segment_file, wait_for
from daemon_harness import Daemon, write_config

MIB = 1 << 20


def _state(daemon: Daemon, camera: str) -> str:
    return next(
        dict(labels)["state"]
        for (name, labels), value in daemon.samples().items()
        if name == "camera_recorder_camera_state" and ("camera", camera) in labels and value == 1
    )


def test_disk_pressure_deletes_the_oldest_segments_across_cameras(tmp_path: Path, tmpfs: Path) -> None:
    # 13 MiB of old segments on a 16 MiB filesystem: above the 70 % threshold from the start.
    old = [segment_file(tmpfs, "cam1" if i % 2 else "cam2", (100 - i) * 3600, MIB) for i in range(13)]
    daemon = Daemon(
        write_config(tmp_path / "config.yaml", tmpfs, storage={"disk_usage_threshold": 70, "low_space_warning": 60})
    )
    try:
        wait_for(
            lambda: (
                (daemon.value("camera_recorder_retention_runs_total", path=str(tmpfs), trigger="disk_pressure") or 0)
                >= 1
            ),
            what="a disk_pressure pass",
        )
        gone = [p for p in old if not p.exists()]
        assert gone and gone == old[: len(gone)], "the oldest go first, across cameras"
        deleted = sum(
            daemon.value("camera_recorder_retention_deleted_files_total", camera=c, reason="disk_pressure") or 0
            for c in ("cam1", "cam2")
        )
        assert deleted == len(gone)
        size = daemon.value("camera_recorder_filesystem_size_bytes", path=str(tmpfs))
        avail = daemon.value("camera_recorder_filesystem_avail_bytes", path=str(tmpfs))
        assert size and avail is not None and 1 - avail / size <= 0.70
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1, what="recording")
    finally:
        assert daemon.stop() == 0


def test_stop_recording_policy_pauses_cameras_until_space_returns(tmp_path: Path, tmpfs: Path) -> None:
    daemon = Daemon(
        write_config(
            tmp_path / "config.yaml",
            tmpfs,
            storage={
                "disk_usage_threshold": 70,
                "low_space_warning": 60,
                "on_threshold": "stop_recording",
                "check_interval": 0.5,
            },
        )
    )
    ballast = tmpfs / "ballast.bin"  # not a segment: retention must never delete it
    try:
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1, what="recording")
        ballast.write_bytes(b"\0" * 13 * MIB)
        wait_for(lambda: _state(daemon, "cam1") == "stopped", what="cam1 paused by the full disk")
        wait_for(lambda: _state(daemon, "cam2") == "stopped", what="cam2 paused by the full disk")
        assert daemon.ffmpeg_pids() == set()
        gap = daemon.value("camera_recorder_recording_gap_seconds_total", camera="cam1") or 0
        wait_for(
            lambda: (daemon.value("camera_recorder_recording_gap_seconds_total", camera="cam1") or 0) > gap + 0.5,
            what="the gap to grow while paused",
        )
        assert ballast.exists()
        ballast.unlink()
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam1") == 1, what="recording again")
    finally:
        assert daemon.stop() == 0


def test_a_reload_that_lifts_the_threshold_resumes_the_paused_cameras(tmp_path: Path, tmpfs: Path) -> None:
    """Paused by stop_recording, unchanged cameras must follow the accounting a reload rebuilds: it starts
    allowed and tells only of flips, so without being asked they stayed paused for good."""
    import signal

    storage = {"disk_usage_threshold": 70, "low_space_warning": 60, "on_threshold": "stop_recording"}
    path = write_config(tmp_path / "config.yaml", tmpfs, storage={**storage, "check_interval": 0.5})
    daemon = Daemon(path)
    try:
        for camera in ("cam1", "cam2"):
            wait_for(lambda camera=camera: daemon.value("camera_recorder_camera_recording", camera=camera) == 1,
                     what=f"{camera} recording")  # fmt: skip
        (tmpfs / "ballast.bin").write_bytes(b"\0" * 13 * MIB)  # 81 % used: above 70, under 95
        wait_for(lambda: "recording stops (on_threshold=stop_recording)" in daemon.log(), what="the pause")
        wait_for(lambda: _state(daemon, "cam1") == "stopped", what="cam1 paused by the full disk")
        wait_for(lambda: _state(daemon, "cam2") == "stopped", what="cam2 paused by the full disk")
        wait_for(lambda: daemon.ffmpeg_pids() == set(), what="every FFmpeg ended by the pause")
        loaded_at = daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0
        write_config(path, tmpfs, storage={**storage, "disk_usage_threshold": 95, "check_interval": 0.5})
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: (daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0) > loaded_at,
            timeout=30,
            what=f"the reload to succeed\n{daemon.log()}",
        )
        for camera in ("cam1", "cam2"):
            wait_for(
                lambda camera=camera: daemon.value("camera_recorder_camera_recording", camera=camera) == 1,
                timeout=20,
                what=f"{camera} recording again under the new threshold\n{daemon.log()}",
            )
    finally:
        assert daemon.stop() == 0
