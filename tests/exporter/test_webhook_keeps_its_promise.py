"""The webhook never deletes below retention's promise: a free_space alert frees down to the low-space warning
but never below `pressure_target`, and under `on_threshold: stop_recording` ("keep every file") it deletes
nothing unless `storage.delete_on_alert: true` says otherwise. A real daemon on a real 16 MiB tmpfs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from conftest import segment_file, wait_for
from daemon_harness import Daemon, write_config

TOKEN = "s3cret-token"
MIB = 1 << 20


def payload(action: str = "free_space") -> bytes:
    alert = {
        "status": "firing",
        "labels": {"alertname": "CameraRecorderDiskLowSpace", "instance": "recorder-under-test:9100",
                   "retention_action": action, "severity": "warning"},
        "annotations": {}, "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph", "fingerprint": f"{action}-1",
    }  # fmt: skip
    return json.dumps(
        {"version": "4", "status": "firing", "receiver": "recorder", "groupKey": "{}", "truncatedAlerts": 0,
         "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
         "alerts": [alert]}
    ).encode()  # fmt: skip


def used_ratio(path: Path) -> float:
    st = os.statvfs(path)
    return 1 - st.f_bavail / st.f_blocks


def run(tmp_path: Path, tmpfs: Path, storage: dict[str, Any]) -> tuple[Daemon, list[Path], str]:
    """Eight 1 MiB segments of the last days (half the disk) and a daemon with `storage`; the webhook called
    once. Returns the daemon (still running), the segments, and its answer's result."""
    old = [segment_file(tmpfs, "cam1" if i % 2 else "cam2", (48 - i) * 3600, MIB) for i in range(8)]
    (tmp_path / "token").write_text(TOKEN + "\n")
    config = write_config(
        tmp_path / "config.yaml", tmpfs,
        storage={"disk_usage_threshold": 90, "check_interval": 3600, "min_free_minutes": 0, **storage},
        exporter={"webhook_token_file": str(tmp_path / "token"), "instance_names": ["recorder-under-test:9100"]},
    )  # fmt: skip
    daemon = Daemon(config)
    wait_for(lambda: daemon.value("camera_recorder_recordings_files", camera="cam1") is not None, what="accounting")
    status, body = daemon.post(
        "/api/v1/alertmanager", payload(), {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    )
    assert status == 200, body
    return daemon, old, json.loads(body)["result"]


def deleted_by_alert(daemon: Daemon) -> float:
    return sum(
        daemon.value("camera_recorder_retention_deleted_files_total", camera=c, reason="alert") or 0
        for c in ("cam1", "cam2")
    )


def test_free_space_stops_at_the_pressure_target_above_the_warning(tmp_path: Path, tmpfs: Path) -> None:
    daemon, old, result = run(tmp_path, tmpfs, {"low_space_warning": 20, "pressure_target": 40})
    try:
        assert result == "accepted"
        gone = [p for p in old if not p.exists()]
        assert gone and gone == old[: len(gone)]  # oldest first
        assert 0.30 < used_ratio(tmpfs) <= 0.40  # down to the target, not on to the 20 % warning
        assert deleted_by_alert(daemon) == len(gone)
    finally:
        assert daemon.stop() == 0


def test_under_stop_recording_an_alert_deletes_nothing(tmp_path: Path, tmpfs: Path) -> None:
    daemon, old, result = run(
        tmp_path, tmpfs, {"low_space_warning": 20, "pressure_target": 25, "on_threshold": "stop_recording"}
    )
    try:
        assert result == "accepted"
        assert all(p.exists() for p in old)
        assert deleted_by_alert(daemon) == 0
        wait_for(lambda: "storage.delete_on_alert is off" in daemon.log(), timeout=10, what="the reason logged")
    finally:
        assert daemon.stop() == 0


def test_under_stop_recording_an_explicit_delete_on_alert_frees_down_to_the_target(tmp_path: Path, tmpfs: Path) -> None:
    daemon, old, result = run(
        tmp_path, tmpfs,
        {"low_space_warning": 20, "pressure_target": 35, "on_threshold": "stop_recording", "delete_on_alert": True},
    )  # fmt: skip
    try:
        assert result == "accepted"
        assert any(not p.exists() for p in old)
        assert 0.25 < used_ratio(tmpfs) <= 0.35
    finally:
        assert daemon.stop() == 0
