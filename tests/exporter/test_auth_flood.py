"""A crowd guessing basic-auth passwords must not hold up a scraper whose credentials are already verified:
requests that need bcrypt run in a pool of their own with a bounded queue, beyond which they get 503 at once."""

from __future__ import annotations

import base64
import http.client
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from conftest import small_config

from exporter.server import AUTH_QUEUE_LIMIT, ExporterServer
from exporter.webconfig import WebOptions
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools

# Cost 10, as `htpasswd -nBC 10` makes: each guess costs a real bcrypt (tens of ms), as in production.
HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(10)).decode()
CROWD = 120
# Far above a scrape's few milliseconds, far below the crowd's queued bcrypt (CROWD x tens of ms, seconds).
PROMPT_SECONDS = 1.5


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ExporterServer]:
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n", encoding="utf-8")
    config = small_config(tmp_path / "rec", exporter={"listen_address": "127.0.0.1:0"})
    served = ExporterServer(config.exporter, Recorder(config, find_tools(config.system)), WebOptions(config_file=web))
    served.start()
    try:
        yield served
    finally:
        served.stop()


def _scrape(conn: http.client.HTTPConnection) -> tuple[int, float]:
    started = time.monotonic()
    conn.request("GET", "/metrics", headers={"Authorization": _basic("prometheus", "s3cret")})
    response = conn.getresponse()
    response.read()
    return response.status, time.monotonic() - started


def test_a_crowd_of_wrong_passwords_does_not_hold_up_a_scraper_with_verified_credentials(
    server: ExporterServer,
) -> None:
    scraper = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    assert _scrape(scraper)[0] == 200  # its credentials are verified (one bcrypt) and cached from now on
    crowd = []
    for guess in range(CROWD):  # each guess a new password: none is in a cache, each would need a bcrypt
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        request = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {_basic('prometheus', f'guess{guess}')}\r\n\r\n"
        sock.sendall(request.encode())
        crowd.append(sock)
    try:
        latencies = []
        for _ in range(5):
            status, seconds = _scrape(scraper)
            assert status == 200
            latencies.append(seconds)
        answers = []
        for sock in crowd:  # every guess is answered: refused after its bcrypt, or 503 at once beyond the queue
            answers.append(int(sock.recv(4096).split(b" ", 2)[1]))
    finally:
        for sock in crowd:
            sock.close()
        scraper.close()
    assert max(latencies) < PROMPT_SECONDS, f"scrapes took {[round(s, 3) for s in latencies]} s behind the crowd"
    assert set(answers) <= {401, 503} and answers.count(503) >= CROWD - 2 * AUTH_QUEUE_LIMIT, answers
    assert server.auth.bcrypt_checks <= 1 + CROWD - answers.count(503)
