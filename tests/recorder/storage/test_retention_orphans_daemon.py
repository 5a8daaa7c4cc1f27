"""Orphaned footage in the running daemon (issue 19): a removed camera's folder filling half a real tmpfs,
a camera renamed by a SIGHUP reload, an orphan folder appearing while it runs; seen in the scrape and the API."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from conftest import segment_file, wait_for
from daemon_harness import Daemon, write_config

MIB = 1 << 20
CAM = {"test_pattern": True, "resolution": "160x120", "framerate": 25}


def reload(daemon: Daemon, rewrite: Callable[[], object]) -> None:
    loaded_at = daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0
    rewrite()
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(
        lambda: (daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0) > loaded_at,
        timeout=30,
        what=f"the reload\n{daemon.log()}",
    )


def test_pressure_in_the_daemon_takes_the_removed_cameras_footage_and_spares_the_configured(
    tmp_path: Path, tmpfs: Path
) -> None:
    # 16 MiB filesystem: cam1's 4 MiB are the oldest footage, the removed camera's 8 MiB fill half the disk.
    configured = [segment_file(tmpfs, "cam1", (200 - i) * 3600, MIB) for i in range(4)]
    orphan = [segment_file(tmpfs, "gone", (100 - i) * 3600, MIB) for i in range(8)]
    (tmpfs / "lost+found").mkdir()
    foreign = tmpfs / "lost+found" / "#12"
    foreign.write_bytes(b"\0" * 4096)
    config = write_config(
        tmp_path / "config.yaml",
        tmpfs,
        cameras={"cam1": CAM},
        storage={"disk_usage_threshold": 70, "low_space_warning": 60},
    )
    daemon = Daemon(config)
    try:
        path = str(tmpfs)
        wait_for(
            lambda: (
                (daemon.value("camera_recorder_retention_runs_total", path=path, trigger="disk_pressure") or 0) >= 1
            ),
            what=f"a disk_pressure pass\n{daemon.log()}",
        )
        gone = [p for p in orphan if not p.exists()]
        assert gone and gone == orphan[: len(gone)], "the orphan's oldest go first"
        assert len(gone) < len(orphan)
        assert all(p.exists() for p in configured), "no configured footage while orphan footage remains"
        assert foreign.exists()
        deleted = daemon.value(
            "camera_recorder_retention_orphaned_deleted_files_total", path=path, reason="disk_pressure"
        )
        assert deleted == len(gone)
        assert daemon.value("camera_recorder_retention_deleted_files_total", camera="cam1", reason="disk_pressure") == 0
        assert daemon.value("camera_recorder_orphaned_recordings_files", camera="gone") == len(orphan) - len(gone)
        assert daemon.value("camera_recorder_orphaned_folders", path=path) == 1
        assert "camera gone is not in the configuration" in daemon.log()
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=daemon.metrics_text(), capture_output=True, text=True, check=False
        )
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint
    finally:
        assert daemon.stop() == 0


def test_a_camera_renamed_by_a_reload_leaves_an_orphan_and_a_new_folder_is_found_by_the_resync(
    tmp_path: Path, tmpfs: Path
) -> None:
    config = tmp_path / "config.yaml"
    # No periodic resync within the test at first: the reload's own scan must find the renamed camera's folder.
    write_config(config, tmpfs, cameras={"cam1": CAM, "porch": CAM}, storage={"resync_interval": 3600})
    daemon = Daemon(config)
    try:
        wait_for(
            lambda: (daemon.value("camera_recorder_recordings_files", camera="porch") or 0) >= 2,
            timeout=30,
            what=f"porch's first segments\n{daemon.log()}",
        )
        renamed = {"cam1": CAM, "front_door": CAM}
        reload(daemon, lambda: write_config(config, tmpfs, cameras=renamed, storage={"resync_interval": 3600}))
        on_disk = len(list((tmpfs / "porch").iterdir()))
        wait_for(
            lambda: daemon.value("camera_recorder_orphaned_recordings_files", camera="porch") == on_disk,
            timeout=20,
            what=f"porch's {on_disk} segments indexed as an orphan\n{daemon.log()}",
        )
        assert daemon.value("camera_recorder_recordings_files", camera="porch") is None
        wait_for(
            lambda: (daemon.value("camera_recorder_recordings_files", camera="front_door") or 0) >= 1,
            timeout=30,
            what=f"front_door recording into its own folder\n{daemon.log()}",
        )
        status, text, _ = daemon.get("/api/v1/recordings?from=-1h")
        assert status == 200, text
        listed = {c["camera"]: (c["configured"], len(c["segments"])) for c in json.loads(text)["cameras"]}
        assert listed["porch"] == (False, on_disk) and listed["cam1"][0] is True and listed["front_door"][0] is True

        # Resync every second from now on; a folder copied in while the daemon runs is found by the next one.
        reload(daemon, lambda: write_config(config, tmpfs, cameras=renamed, storage={"resync_interval": 1}))
        stray = [segment_file(tmpfs, "stray", (10 - i) * 3600, 4096) for i in range(3)]
        wait_for(
            lambda: daemon.value("camera_recorder_orphaned_recordings_files", camera="stray") == 3,
            timeout=20,
            what=f"the stray folder found by a resync\n{daemon.log()}",
        )
        assert daemon.value("camera_recorder_orphaned_folders", path=str(tmpfs)) == 2
        assert all(p.exists() for p in stray)  # young enough for cleanup_days: kept
    finally:
        assert daemon.stop() == 0
