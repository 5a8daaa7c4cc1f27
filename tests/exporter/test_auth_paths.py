"""Basic auth covers every path but the webhook's, however the path is spelled: no trick in the request
target (dot segments, doubled or trailing slashes, percent-encoding, the absolute form, a query, another
method) reaches a route without credentials, and the webhook's own exemption is for its exact path only."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import bcrypt
import pytest
from conftest import small_config

from exporter.server import WEBHOOK_PATH, ExporterServer
from exporter.webconfig import WebOptions
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
GOOD = "Basic " + base64.b64encode(b"prometheus:s3cret").decode()
TRICKS = [
    "/metrics",
    "/metrics/",
    "//metrics",
    "/./metrics",
    "/-/../metrics",
    "/%6detrics",
    "/metrics%00",
    "/metrics;x",
    "/metrics?x=1",
    "/METRICS",
    "http://example/metrics",
    "/api/v1/alertmanager/../../../metrics",
    f"{WEBHOOK_PATH}/",
    f"{WEBHOOK_PATH}/../recordings?camera=cam1",
    f"{WEBHOOK_PATH}%2f..%2frecordings",
    "/api/v1/recordings?camera=cam1",
    "/cameras/cam1/latest.jpg",
    "/cameras/../metrics/latest.jpg",
    "/",
    "/-/ready",
    "*",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterServer]:
    tmp = tmp_path_factory.mktemp("auth")
    web = tmp / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n", encoding="utf-8")
    config = small_config(tmp / "rec", exporter={"listen_address": "127.0.0.1:0"})
    served = ExporterServer(config.exporter, Recorder(config, find_tools(config.system)), WebOptions(config_file=web))
    served.start()
    try:
        yield served
    finally:
        served.stop()


def status(server: ExporterServer, method: str, target: str, authorization: str | None = None) -> int:
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if authorization:
        head += f"Authorization: {authorization}\r\n"
    if method == "POST":
        head += "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    else:
        head += "\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize("target", TRICKS)
def test_no_spelling_of_a_path_gets_past_basic_auth(server: ExporterServer, method: str, target: str) -> None:
    assert status(server, method, target) in (400, 401)


def test_the_credentials_open_them_and_the_webhook_answers_for_itself(server: ExporterServer) -> None:
    assert status(server, "GET", "/metrics", GOOD) == 200
    assert status(server, "GET", "/metrics?x=1", GOOD) == 200
    assert status(server, "GET", "/%6detrics", GOOD) == 404  # not decoded into a route: nothing there
    # Its token is the webhook's credential (none is configured here: it answers 503, disabled), not basic auth.
    assert status(server, "POST", WEBHOOK_PATH) == 503
    assert status(server, "POST", WEBHOOK_PATH, GOOD) == 503
