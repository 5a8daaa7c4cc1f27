"""The HTTP surface under hostile clients, on a real daemon: slowloris, silent crowds, descriptors running out,
and the --web.* flags (web config with TLS, client certificates and bcrypt users; telemetry path)."""

from __future__ import annotations

import base64
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import bcrypt
import psutil
import pytest
from conftest import wait_for
from daemon_harness import REPO, Daemon, free_port, write_config
from tls_certs import CertPair, make_ca, make_cert

from exporter.web import REQUEST_TIMEOUT
from recorder.app.cli import EXIT_CONFIG

# Seconds of CPU the daemon may use in a 2 s window while a crowd waits at its door: a spinning accept loop
# uses about 2 s (a whole core); the daemon's own work with two cheap cameras is a few hundredths.
CPU_WINDOW = 2.0
CPU_BUDGET = 0.6


class RawDaemon:
    """The daemon started with an argv prefix (prlimit) and any flags, ready when its port accepts."""

    def __init__(self, config: Path, *, prefix: Sequence[str] = (), extra_args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.log_path = config.with_suffix(".log")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "recorder", "-c", str(config), "--listen-address",
             f"127.0.0.1:{self.port}", *extra_args],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self._listening, timeout=20, what="the daemon to listen")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self._log.close()


def get(
    port: int,
    path: str = "/metrics",
    *,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 5.0,
) -> tuple[int, str]:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def frames(port: int, camera: str) -> float:
    for line in get(port)[1].splitlines():
        if line.startswith(f'camera_recorder_frames_total{{camera="{camera}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no frame counter for {camera}")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def cpu_used_over_window(pid: int) -> float:
    before = cpu_seconds(pid)
    time.sleep(CPU_WINDOW)  # a measurement window, not a synchronisation
    return cpu_seconds(pid) - before


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(write_config(tmp_path / "config.yaml", tmp_path / "rec"))
    yield d
    assert d.stop() == 0


def test_slow_and_silent_clients_neither_hold_up_scrapes_nor_stay_forever(daemon: Daemon) -> None:
    silent = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(40)]
    dribblers = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(40)]
    opened = time.monotonic()
    for sock in dribblers:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    try:
        # More slow clients than the exporter has handler threads: scrapes still come back at once.
        for _ in range(20):
            status, body = get(daemon.port, timeout=3)
            assert status == 200 and "camera_recorder_build_info" in body
        last_dribble = [0.0]

        def everyone_cut_off() -> bool:
            now = time.monotonic()
            if now - last_dribble[0] >= 0.5:  # a header line every half second, never the blank line
                last_dribble[0] = now
                for sock in dribblers:
                    try:
                        sock.send(b"X-Slow: 1\r\n")
                    except OSError:
                        pass  # already cut off
            return all(closed_by_peer(s) for s in silent + dribblers)

        wait_for(everyone_cut_off, timeout=REQUEST_TIMEOUT + 10, what="slow and silent clients to be cut off")
        # Cut off by the request deadline, not by a per-read timeout that steady dribbling would keep resetting.
        assert time.monotonic() - opened >= REQUEST_TIMEOUT - 1
        assert get(daemon.port)[0] == 200
    finally:
        for sock in silent + dribblers:
            sock.close()


def test_a_crowd_at_the_fd_limit_neither_spins_nor_stops_metrics_or_recording(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "rec")
    # 256 descriptors: the exporter keeps at most 128 connections, the rest is for FFmpeg's pipes and segments.
    daemon = RawDaemon(config, prefix=("prlimit", "--nofile=256:256", "--"))
    crowd: list[socket.socket] = []
    try:
        wait_for(lambda: frames(daemon.port, "cam1") > 0, what="recording")
        before = {cam: frames(daemon.port, cam) for cam in ("cam1", "cam2")}
        # 1. More connections than the exporter keeps: the least recently active idle ones make room.
        for _ in range(400):
            crowd.append(socket.create_connection(("127.0.0.1", daemon.port)))
        assert cpu_used_over_window(daemon.proc.pid) < CPU_BUDGET
        assert get(daemon.port, timeout=5)[0] == 200  # a scraper still gets in while the crowd holds on
        for cam, count in before.items():
            wait_for(lambda cam=cam, count=count: frames(daemon.port, cam) > count, what=f"{cam} to keep recording")

        # 2. The descriptors themselves run out (accept() fails with EMFILE): the listener is parked, not polled.
        # Well below what is open now: a new descriptor takes the lowest free number, so the limit bites only
        # once every number under it is in use (the crowd's connections fill them).
        assert len(os.listdir(f"/proc/{daemon.proc.pid}/fd")) > 100
        subprocess.run(["prlimit", f"--pid={daemon.proc.pid}", "--nofile=64:256"], check=True)
        more = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(50)]
        crowd += more
        wait_for(lambda: "cannot accept connections: Too many open files" in daemon.log(), what="EMFILE at accept")
        assert cpu_used_over_window(daemon.proc.pid) < CPU_BUDGET

        # 3. The crowd leaves and the limit comes back: /metrics answers again, by itself.
        for sock in crowd:
            sock.close()
        crowd.clear()
        subprocess.run(["prlimit", f"--pid={daemon.proc.pid}", "--nofile=256:256"], check=True)

        def metrics_again() -> bool:
            try:
                return get(daemon.port, timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(metrics_again, timeout=20, what="/metrics to answer after the crowd left")
    finally:
        for sock in crowd:
            sock.close()
        assert daemon.stop() == 0


def test_telemetry_path_and_disabled_exporter_metrics(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "rec")
    daemon = Daemon(config, extra_args=("--web.telemetry-path", "/internal/metrics", "--web.disable-exporter-metrics"))
    try:
        status, body, _ = daemon.get("/internal/metrics")
        assert status == 200 and "camera_recorder_build_info" in body
        families = {line.split()[2] for line in body.splitlines() if line.startswith("# TYPE")}
        assert not any(name.startswith(("process_", "python_")) for name in families), families
        assert daemon.get("/metrics")[0] == 404
        assert 'href="internal/metrics"' in daemon.get("/")[1]
    finally:
        assert daemon.stop() == 0


def test_a_bad_telemetry_path_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "rec")
    result = subprocess.run(
        [sys.executable, "-m", "recorder", "-c", str(config), "--listen-address", f"127.0.0.1:{free_port()}",
         "--web.telemetry-path", "/-/healthy"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_CONFIG  # a configuration error (sysexits)
    assert result.stderr.strip().splitlines()[-1] == (
        "--web.telemetry-path: /-/healthy is taken by another endpoint (/, /-/healthy, /-/ready, /api/v1/alertmanager, "
        "/api/v1/export, /api/v1/recordings)"
    )


# -- --web.config.file ------------------------------------------------------------------------------------


def _client_context(
    ca: Path, client: CertPair | None = None, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    if max_version is not None:
        context.maximum_version = max_version
    return context


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_web_config_file_tls_client_certificates_bcrypt_users_and_renewal(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "ca")
    server = make_cert(tmp_path, "server", ca, cn="first")
    client = make_cert(tmp_path, "client", ca, cn="prometheus")
    stranger = make_cert(tmp_path, "stranger")  # self-signed: not from the client CA
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(10)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {server.cert.name}\n  key_file: {server.key.name}\n"
        f"  client_ca_file: {ca.cert.name}\n  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    config = write_config(tmp_path / "config.yaml", tmp_path / "rec")
    daemon = RawDaemon(config, extra_args=("--web.config.file", str(web)))
    good = _basic("prometheus", "s3cret")
    try:
        context = _client_context(ca.cert, client)
        assert get(daemon.port, headers=good, context=context)[0] == 200
        assert get(daemon.port, headers=_basic("prometheus", "wrong"), context=context)[0] == 401
        assert get(daemon.port, headers=_basic("grafana", "s3cret"), context=context)[0] == 401
        assert get(daemon.port, context=context)[0] == 401
        for refused in (
            _client_context(ca.cert),  # no client certificate
            _client_context(ca.cert, stranger),  # one the client CA did not sign
            _client_context(ca.cert, client, max_version=ssl.TLSVersion.TLSv1_2),  # under min_version
        ):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                get(daemon.port, headers=good, context=refused)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            get(daemon.port, headers=good)  # plain HTTP

        # A renewed certificate, written in place, is served to new connections without a restart.
        renewed = make_cert(tmp_path, "renewed", ca, cn="second")
        server.key.write_bytes(renewed.key.read_bytes())
        server.cert.write_bytes(renewed.cert.read_bytes())

        def served_cn() -> str:
            with (
                socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                subject = dict(item[0] for item in tls.getpeercert()["subject"])
                return str(subject["commonName"])

        wait_for(lambda: served_cn() == "second", what="the renewed certificate")
        assert get(daemon.port, headers=good, context=context)[0] == 200
    finally:
        assert daemon.stop() == 0


def test_a_broken_web_config_file_is_one_line_naming_file_key_and_value(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: plaintext\n")
    config = write_config(tmp_path / "config.yaml", tmp_path / "rec")
    result = subprocess.run(
        [sys.executable, "-m", "recorder", "-c", str(config), "--web.config.file", str(web)],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_CONFIG  # a configuration error (sysexits)
    assert result.stderr.strip().splitlines() == [
        f"{web}: basic_auth_users.prometheus: expected a bcrypt hash such as $2y$10$... (htpasswd -nBC 10 prometheus), "
        "got 'plaintext'"
    ]
