"""Issue 22's attacks on a real daemon (looped test-pattern cameras, loopback traffic): the fd limit lowered
on the running daemon under a connection flood, bodies declared before authentication, a bcrypt guessing
flood, malformed times, replayed webhook calls, and the status page's headers."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import bcrypt
import pytest
from conftest import wait_for
from daemon_harness import Daemon, write_config

from exporter.server import FD_RESERVE_BASE, FD_RESERVE_PER_CAMERA
from exporter.web import ACCEPT_BURST

TOKEN = "s3cret-token"
WEBHOOK = "/api/v1/alertmanager"
# Seconds of recording gap a camera may gather while the flood lasts: its segments' boundaries and the
# scheduler's noise on a shared machine, far under the ~35 s the issue saw.
GAP_BOUND = 6.0


def raw(port: int, head: bytes, *, source: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
    """Send `head` on a fresh connection and read the answer to the end (the request asks for close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def gap(daemon: Daemon, camera: str) -> float:
    return daemon.value("camera_recorder_recording_gap_seconds_total", camera=camera) or 0.0


def test_a_flood_under_a_limit_lowered_at_run_time_leaves_recording_its_descriptors(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    crowd: list[socket.socket] = []
    try:
        wait_for(lambda: (daemon.value("camera_recorder_frames_total", camera="cam1") or 0) > 0, what="recording")
        gaps_before = {cam: gap(daemon, cam) for cam in ("cam1", "cam2")}
        reserve = FD_RESERVE_BASE + 2 * FD_RESERVE_PER_CAMERA

        def flood(count: int) -> None:
            for _ in range(count):
                crowd.append(socket.create_connection(("127.0.0.1", daemon.port)))

        # Started with the usual limit (a connection cap of 1024): 300 idle connections are let in ...
        flood(300)
        wait_for(lambda: fds(daemon.proc.pid) > 300, what="the idle crowd to be let in")
        # ... and the limit is lowered under them: with no new connection to make room for, the idle ones are
        # shed until the descriptors kept for recording are free again.
        subprocess.run(["prlimit", f"--pid={daemon.proc.pid}", "--nofile=256:256"], check=True)
        wait_for(lambda: fds(daemon.proc.pid) <= 256 - reserve, timeout=10, what="idle connections shed")
        flood(400)
        # The flood never takes what is reserved for recording (a burst of accepts overshoots by ACCEPT_BURST).
        wait_for(lambda: fds(daemon.proc.pid) <= 256 - reserve + ACCEPT_BURST, what="connections shed to budget")
        answered = 0
        for _ in range(9):
            flood(20)
            status, body, _ = daemon.get("/metrics")
            answered += status == 200 and "camera_recorder_build_info" in body
            assert fds(daemon.proc.pid) <= 256 - reserve + ACCEPT_BURST
        assert answered == 9

        # An FFmpeg killed during the flood is restarted: its spawn finds descriptors.
        old = daemon.ffmpeg_pid_by_camera()["cam1"]
        os.kill(old, signal.SIGKILL)

        def restarted_and_recording() -> bool:
            flood(20)  # the flood goes on meanwhile
            pid = daemon.ffmpeg_pid_by_camera().get("cam1")
            return pid is not None and pid != old

        wait_for(restarted_and_recording, timeout=30, what="cam1's FFmpeg to restart during the flood")
        frames = daemon.value("camera_recorder_frames_total", camera="cam1") or 0
        wait_for(lambda: (daemon.value("camera_recorder_frames_total", camera="cam1") or 0) > frames,
                 what="cam1 to record again")  # fmt: skip
        assert "Too many open files" not in daemon.log()
        # cam2 was never touched: the flood cost it no recording.
        assert gap(daemon, "cam2") - gaps_before["cam2"] <= GAP_BOUND
    finally:
        for sock in crowd:
            sock.close()
        assert daemon.stop() == 0


@pytest.fixture
def webhook_daemon(tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "token").write_text(TOKEN + "\n")
    config = write_config(
        tmp_path / "config.yaml",
        tmp_path / "rec",
        exporter={"webhook_token_file": str(tmp_path / "token"), "instance_names": ["recorder-under-test:9100"]},
    )
    daemon = Daemon(config)
    yield daemon
    assert daemon.stop() == 0


def _alerts(*, status: str = "firing", starts_at: str | None = None, action: str = "nothing_known") -> bytes:
    alert = {
        "status": status, "labels": {"alertname": "X", "instance": "recorder-under-test:9100",
                                     "retention_action": action},
        "startsAt": starts_at or datetime.now(timezone.utc).isoformat(), "fingerprint": "0123abcd",
    }  # fmt: skip
    return json.dumps({"version": "4", "status": status, "alerts": [alert]}).encode()


def _post(body: bytes, token: str = TOKEN) -> bytes:
    return (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_bodies_declared_without_credentials_spend_no_budget(webhook_daemon: Daemon) -> None:
    daemon = webhook_daemon
    holders = []
    try:
        # 40 connections declaring 1 MiB bodies they never send: 40 MiB, over the 32 MiB of bodies read at once.
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
            sock.sendall(
                f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer guess\r\n"
                f"Content-Type: application/json\r\nContent-Length: {1 << 20}\r\n\r\n".encode()
            )
            holders.append(sock)
        # Each is answered 401 at once, its body never read.
        for sock in holders:
            assert status_of(sock.recv(4096)) == 401
        for _ in range(5):  # Alertmanager's call, with its token, gets through every time
            answer = raw(daemon.port, _post(_alerts(status="resolved")))
            assert status_of(answer) == 200, answer
    finally:
        for sock in holders:
            sock.close()
    assert daemon.value("camera_recorder_alert_webhook_requests_total", result="busy") == 0


def test_a_replayed_or_stale_webhook_call_is_not_acted_on_twice(webhook_daemon: Daemon) -> None:
    daemon = webhook_daemon
    # enforce_max_age deletes nothing here (all footage is minutes old): what counts is that it runs once.
    body = _alerts(action="enforce_max_age")
    first = json.loads(raw(daemon.port, _post(body)).split(b"\r\n\r\n", 1)[1])
    assert first["result"] == "accepted" and first["actions"] == ["enforce_max_age"], first
    replayed = json.loads(raw(daemon.port, _post(body)).split(b"\r\n\r\n", 1)[1])
    assert replayed["result"] == "ignored" and replayed["skipped"] == {"already_acted_on": 1}
    stale = json.loads(raw(daemon.port, _post(_alerts(action="enforce_max_age", starts_at="2026-01-01T00:00:00Z")))
                       .split(b"\r\n\r\n", 1)[1])  # fmt: skip
    assert stale["result"] == "ignored" and stale["skipped"] == {"too_old": 1}
    runs = daemon.value(
        "camera_recorder_retention_runs_total", path=str(daemon.log_path.parent / "rec"), trigger="alert"
    )
    assert runs == 1


def test_malformed_times_and_numbers_are_4xx_counted_and_quiet(webhook_daemon: Daemon) -> None:
    daemon = webhook_daemon
    lines_before = len(daemon.log().splitlines())
    targets = [
        "/?day=9999-12-31", "/?day=0001-01-01",
        "/api/v1/recordings?camera=cam1&from=0001-01-01%2000:00&to=0001-01-01%2001:00",
        "/api/v1/recordings?camera=cam1&from=9999-12-31%2022:00&to=9999-12-31%2023:00",
        "/api/v1/export?camera=cam1&from=0001-01-01%2000:00Z&to=0001-01-01%2001:00Z",
        "/api/v1/export?camera=cam1&from=9999-12-31%2022:00&to=9999-12-31%2023:59",
    ]  # fmt: skip
    for _ in range(17):  # a hundred requests
        for target in targets:
            answer = raw(daemon.port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert status_of(answer) == 400, (target, answer)
    huge = b'{"version": "4", "alerts": [], "n": ' + b"9" * 5000 + b"}"
    assert status_of(raw(daemon.port, _post(huge))) == 400
    assert daemon.value("camera_recorder_alert_webhook_requests_total", result="invalid") == 1
    assert daemon.value("camera_recorder_http_responses_total", code="4xx") >= 103
    assert not daemon.value("camera_recorder_http_responses_total", code="5xx")
    # A line at most (the webhook's refusal), no tracebacks; the cameras' own lines are theirs.
    added = [line for line in daemon.log().splitlines()[lines_before:] if "recorder.camera.supervisor" not in line]
    assert len(added) <= 2 and not any("Traceback" in line for line in added), added


def test_the_status_page_says_how_browsers_may_use_it(webhook_daemon: Daemon) -> None:
    status, page, headers = webhook_daemon.get("/")
    assert status == 200 and "<html" in page
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy


class UncachedDaemon(Daemon):
    """Ready once its port accepts: no request with credentials has been made (none is cached yet)."""

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return self.get("/-/healthy")[0] == 401
        except OSError:
            return False


def test_new_credentials_get_in_during_a_guessing_flood(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(10)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n", encoding="utf-8")
    daemon = UncachedDaemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"),
                            extra_args=("--web.config.file", str(web)))  # fmt: skip
    stop = threading.Event()
    lock = threading.Lock()
    answers: set[int] = set()
    first_refusal: list[float] = []  # when a guess was first answered 429 (without bcrypt)
    outstanding: dict[int, float] = {}  # guesser -> when its unanswered guess was sent

    def guess(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            wrong = base64.b64encode(f"prometheus:guess-{worker}-{n}".encode()).decode()
            head = f"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {wrong}\r\n\r\n"
            with lock:
                outstanding[worker] = time.monotonic()
            try:
                status = status_of(raw(daemon.port, head.encode(), source="127.0.0.2"))  # another host
            except OSError:
                continue
            with lock:
                del outstanding[worker]
                answers.add(status)
                if status == 429 and not first_refusal:
                    first_refusal.append(time.monotonic())

    # 32 guessing connections at once, from elsewhere; the daemon restarted has no credentials cached.
    workers = [threading.Thread(target=guess, args=(i,), daemon=True) for i in range(32)]
    for worker in workers:
        worker.start()
    try:

        def guesser_refused_without_bcrypt() -> bool:
            # Refused, and every guess still waiting was sent after that: none of them is in the bcrypt queue.
            with lock:
                return bool(first_refusal) and all(sent > first_refusal[0] for sent in outstanding.values())

        # The issue saw 503 ten times of ten: every bcrypt slot taken by a guess. Now the guessing address is
        # refused without bcrypt once it has failed AUTH_FAILURES times (well within one scrape interval) ...
        wait_for(guesser_refused_without_bcrypt, timeout=15, what="the guessing address to be refused")
        assert {401, 429} <= answers <= {401, 429, 503}, answers
        # ... and a scraper with new, good credentials gets in at its first try while the guessing goes on.
        good = base64.b64encode(b"prometheus:s3cret").decode()
        head = f"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {good}\r\n\r\n"
        answer = raw(daemon.port, head.encode())
        assert status_of(answer) == 200, answer
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
        assert daemon.stop() == 0
