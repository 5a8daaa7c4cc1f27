"""The Alertmanager webhook on a real daemon over a real small filesystem: what it deletes and refuses."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import segment_file, wait_for
from daemon_harness import Daemon, write_config

from exporter import metrics as m

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
        # The warning above the pressure target: an alert frees below the warning, never below the target
        # (min_free_minutes off: with the target that low it would free space on its own).
        storage={
            "disk_usage_threshold": 90,
            "low_space_warning": 30,
            "pressure_target": 25,
            "min_free_minutes": 0,
            "check_interval": 3600,
        },
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
        "annotations": {}, "startsAt": datetime.now(timezone.utc).isoformat(), "endsAt": "0001-01-01T00:00:00Z",
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
        b"[" * 100_000 + b"]" * 100_000,
        b'{"version": "4", "alerts": [{"status": "firing", "labels": {"a": "\xff\xfe"}}]}',
    ],
    ids=["broken-json", "alerts-not-a-list", "label-not-a-string", "wrong-version", "too-deep", "not-utf8"],
)
def test_malformed_bodies_are_400_and_delete_nothing(recorder, body: bytes) -> None:  # type: ignore[no-untyped-def]
    daemon, old, _ = recorder
    status, text = daemon.post("/api/v1/alertmanager", body, _auth())
    assert status == 400, text
    assert json.loads(text)["result"] == "invalid"
    assert all(p.exists() for p in old)
    assert _result(daemon, "invalid") == 1


def test_webhook_is_off_without_a_token_file(tmp_path: Path) -> None:
    # Was 401 before issue 11: a webhook that is off is unavailable (503, result "disabled"), not a bad login.
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    try:
        status, body = daemon.post("/api/v1/alertmanager", _payload(), _auth())
        assert status == 503 and "webhook_token_file" in body
        assert json.loads(body)["result"] == "disabled"
        assert _result(daemon, "disabled") == 1
    finally:
        assert daemon.stop() == 0


def _raw(daemon: Daemon, request: bytes, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """Send bytes as they are (no client library fixing them up) and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _post_head(length: str, content_type: str = "application/json", extra: str = "") -> bytes:
    return (
        f"POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


def test_every_refused_request_gets_an_answer_and_a_count(recorder) -> None:  # type: ignore[no-untyped-def]
    daemon, old, _ = recorder
    cases: list[tuple[str, bytes, int, str]] = [
        # An absurd length is refused from the head alone: no body is ever sent, and the answer still comes.
        ("absurd length", _post_head("1" + "0" * 18), 413, "too_large"),
        ("over the limit", _post_head(str(2 << 20)) + b"[" * 4096, 413, "too_large"),
        ("text/plain", _post_head("2", "text/plain") + b"{}", 415, "unsupported_media_type"),
        ("form", _post_head("2", "application/x-www-form-urlencoded") + b"{}", 415, "unsupported_media_type"),
        ("chunked", _post_head("2").replace(b"Content-Length: 2", b"Transfer-Encoding: chunked"), 411, "invalid"),
        ("too deep", _post_head("20000") + b"[" * 10_000 + b"]" * 10_000, 400, "invalid"),
    ]
    for why, raw, status, result in cases:
        before = _result(daemon, result)
        got_status, body = _raw(daemon, raw)
        assert (got_status, body["result"]) == (status, result), why
        assert _result(daemon, result) == before + 1, why
    assert all(p.exists() for p in old)
    total = sum(_result(daemon, r) for r in m.WEBHOOK_RESULTS)
    assert total == len(cases)
    # A length past 64 bits is no number at all: the HTTP parser refuses the head (400, RFC 9110 8.6) before
    # any route, so the webhook never sees it to count it.
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(_post_head("1" + "0" * 30))
        assert sock.recv(65536).split(b" ", 2)[1] == b"400"
    assert sum(_result(daemon, r) for r in m.WEBHOOK_RESULTS) == total


def test_missing_content_type_is_415(recorder) -> None:  # type: ignore[no-untyped-def]
    daemon, _, _ = recorder
    status, body = daemon.post("/api/v1/alertmanager", _payload(), {"Authorization": f"Bearer {TOKEN}"})
    assert status == 415 and json.loads(body)["result"] == "unsupported_media_type"
    with_charset = {**_auth(), "Content-Type": "application/json; charset=utf-8"}
    status, _ = daemon.post("/api/v1/alertmanager", _payload(status="resolved"), with_charset)
    assert status == 200


def test_the_token_may_come_as_the_basic_auth_password(recorder) -> None:  # type: ignore[no-untyped-def]
    # Alertmanager sends either http_config.authorization or http_config.basic_auth, never both.
    daemon, old, _ = recorder
    basic = "Basic " + base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode()
    status, body = daemon.post("/api/v1/alertmanager", _payload(status="resolved"), {**_auth(), "Authorization": basic})
    assert status == 200 and json.loads(body)["result"] == "ignored"
    wrong = "Basic " + base64.b64encode(b"alertmanager:guess").decode()
    status, _ = daemon.post("/api/v1/alertmanager", _payload(), {**_auth(), "Authorization": wrong})
    assert status == 401
    assert all(p.exists() for p in old)


def test_failed_authentication_is_logged_once_and_every_time_counted(recorder) -> None:  # type: ignore[no-untyped-def]
    daemon, _, _ = recorder
    for _ in range(20):
        assert daemon.post("/api/v1/alertmanager", _payload(), _auth("wrong"))[0] == 401
    assert _result(daemon, "unauthorized") == 20
    lines = [ln for ln in daemon.log().splitlines() if "alertmanager webhook: unauthorized" in ln]
    assert len(lines) == 1, lines


@pytest.mark.parametrize("problem", ["not-utf8", "missing", "a-directory", "empty", "a-fifo"])
def test_an_unusable_token_file_disables_the_webhook_with_one_log_line(tmp_path: Path, problem: str) -> None:
    token_file = tmp_path / "token"
    if problem == "not-utf8":
        token_file.write_bytes(b"caf\xe9-token\n")  # Latin-1
    elif problem == "a-directory":
        token_file.mkdir()
    elif problem == "empty":
        token_file.write_text("\n")
    elif problem == "a-fifo":
        os.mkfifo(token_file)  # reading it would block the webhook for good
    config = write_config(tmp_path / "config.yaml", tmp_path / "rec", exporter={"webhook_token_file": str(token_file)})
    daemon = Daemon(config)
    try:
        for _ in range(3):
            status, body = daemon.post("/api/v1/alertmanager", _payload(status="resolved"), _auth())
            assert status == 503 and json.loads(body)["result"] == "disabled", body
        assert _result(daemon, "disabled") == 3
        lines = [ln for ln in daemon.log().splitlines() if "webhook disabled" in ln]
        assert len(lines) == 1 and str(token_file) in lines[0], lines
        if problem not in ("a-directory", "a-fifo"):
            # A fixed file applies without a restart.
            token_file.write_text(TOKEN + "\n")
            status, body = daemon.post("/api/v1/alertmanager", _payload(status="resolved"), _auth())
            assert status == 200 and json.loads(body)["result"] == "ignored", body
    finally:
        assert daemon.stop() == 0
