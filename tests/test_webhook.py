"""The Alertmanager webhook on a real daemon over a real small filesystem: what it deletes and refuses."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import segment_file, wait_for
from daemon_harness import Daemon, write_config

TOKEN = "s3cret-token"
MIB = 1 << 20


@pytest.fixture
def recorder(tmp_path: Path, tmpfs: Path) -> Iterator[tuple[Daemon, list[Path], Path]]:
    # Eight 1 MiB segments from the last days fill half of the 16 MiB filesystem: under the 90 %
    # threshold (the recorder's own passes leave them) but over the 30 % warning an alert frees to.
    old = [segment_file(tmpfs, "cam1" if i % 2 else "cam2", (48 - i) * 3600, MIB) for i in range(8)]
    foreign = tmpfs / "cam1" / "notes.txt"
    foreign.write_text("not a segment")
    (tmp_path / "token").write_text(TOKEN + "\n")
    config = write_config(
        tmp_path / "config.yaml",
        tmpfs,
        storage={"disk_usage_threshold": 90, "low_space_warning": 30, "check_interval": 3600},
        exporter={"webhook_token_file": str(tmp_path / "token"), "instance_names": ["recorder-under-test:9100"]},
    )
    daemon = Daemon(config)
    wait_for(lambda: daemon.value("camera_recorder_recordings_files", camera="cam1") is not None, what="accounting")
    try:
        yield daemon, old, foreign
    finally:
        assert daemon.stop() == 0


def _payload(status: str = "firing", action: str = "free_space", instance: str = "recorder-under-test:9100") -> bytes:
    alert = {
        "status": status,
        "labels": {"alertname": "CameraRecorderDiskAboveRetentionThreshold", "instance": instance,
                   "retention_action": action, "severity": "warning"},
        "annotations": {}, "startsAt": "2026-11-25T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph", "fingerprint": "abc",
    }  # fmt: skip
    return json.dumps(
        {"version": "4", "status": status, "receiver": "recorder", "groupKey": "{}", "truncatedAlerts": 0,
         "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
         "alerts": [alert]}
    ).encode()  # fmt: skip


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _result(daemon: Daemon, result: str) -> float:
    return daemon.value("camera_recorder_alert_webhook_requests_total", result=result) or 0


def test_firing_free_space_alert_deletes_oldest_segments_until_below_the_warning(recorder) -> None:  # type: ignore[no-untyped-def]
    daemon, old, foreign = recorder
    status, body = daemon.post("/api/v1/alertmanager", _payload(), _auth())
    assert status == 200, body
    assert json.loads(body)["result"] == "accepted"
    gone = [p for p in old if not p.exists()]
    assert gone, "nothing was deleted"
    # Oldest first: what is gone is a prefix of the files sorted by age.
    assert gone == old[: len(gone)]
    assert foreign.exists()
    stat = subprocess.run(["df", "--output=pcent", str(old[0].parent.parent)], capture_output=True, text=True)
    assert int(stat.stdout.split()[-1].rstrip("%")) <= 30
    assert _result(daemon, "accepted") == 1
    deleted = sum(
        daemon.value("camera_recorder_retention_deleted_files_total", camera=c, reason="alert") or 0
        for c in ("cam1", "cam2")
    )
    assert deleted == len(gone)
    assert daemon.value("camera_recorder_retention_runs_total", path=str(old[0].parent.parent), trigger="alert") == 1


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (_payload(status="resolved"), "resolved"),
        (_payload(instance="another-recorder:9100"), "another instance"),
        (_payload(action="reboot_the_box"), "an unknown action"),
    ],
)
def test_alerts_not_for_us_are_ignored(recorder, payload: bytes, why: str) -> None:  # type: ignore[no-untyped-def]
    daemon, old, _ = recorder
    status, body = daemon.post("/api/v1/alertmanager", payload, _auth())
    assert status == 200 and json.loads(body)["result"] == "ignored", why
    assert all(p.exists() for p in old)
    assert _result(daemon, "ignored") == 1


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_missing_or_wrong_token_is_401_and_deletes_nothing(recorder, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    daemon, old, _ = recorder
    status, _ = daemon.post("/api/v1/alertmanager", _payload(), headers)
    assert status == 401
    assert all(p.exists() for p in old)
    assert _result(daemon, "unauthorized") == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps({"version": "4", "alerts": "all of them"}).encode(),
        json.dumps({"version": "4", "alerts": [{"status": "firing", "labels": {"instance": 9100}}]}).encode(),
        json.dumps({"version": "3", "alerts": []}).encode(),
        b"[" + b" " * (2 << 20) + b"]",
    ],
    ids=["broken-json", "alerts-not-a-list", "label-not-a-string", "wrong-version", "huge"],
)
def test_malformed_bodies_are_400_and_delete_nothing(recorder, body: bytes) -> None:  # type: ignore[no-untyped-def]
    daemon, old, _ = recorder
    status, text = daemon.post("/api/v1/alertmanager", body, _auth())
    assert status == 400, text
    assert json.loads(text)["result"] == "invalid"
    assert all(p.exists() for p in old)
    assert _result(daemon, "invalid") == 1


def test_webhook_is_off_without_a_token_file(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    try:
        status, body = daemon.post("/api/v1/alertmanager", _payload(), _auth())
        assert status == 401 and "webhook_token_file" in body
    finally:
        assert daemon.stop() == 0
