"""/metrics on the real server, in process: the format negotiated from Accept as prometheus_client does it
(Prometheus 2 and 3 get OpenMetrics, a client naming no format the text one), gzip when Accept-Encoding
allows it, and what a hostile Accept cannot do (fail the scrape, grow the server's tables)."""

from __future__ import annotations

import gzip
import http.client
from collections.abc import Iterator

import pytest
from conftest import small_config
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.server import MAX_SHARED_RENDERS, ExporterServer
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools

# scrape/scrape.go's Accept headers: Prometheus 2.x, and 3.x with its default scrape_protocols.
PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterServer]:
    config = small_config(tmp_path_factory.mktemp("rec"), exporter={"listen_address": "127.0.0.1:0"})
    served = ExporterServer(config.exporter, Recorder(config, find_tools(config.system)))
    served.start()
    try:
        yield served
    finally:
        served.stop()


def scrape(server: ExporterServer, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, "/metrics", headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("accept", [PROMETHEUS_2, PROMETHEUS_3], ids=["prometheus-2", "prometheus-3"])
def test_prometheus_gets_openmetrics_gzipped(server: ExporterServer, accept: str) -> None:
    status, headers, body = scrape(server, Accept=accept, Accept_Encoding="gzip")
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert "Accept-Encoding" in headers["Vary"]
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n") and len(body) * 4 < len(text)
    families = {f.name for f in parse_openmetrics(text)}
    assert {"camera_recorder_build", "camera_recorder_frames"} <= families


def test_a_client_naming_no_format_gets_the_text_format_uncompressed(server: ExporterServer) -> None:
    status, headers, body = scrape(server)
    assert status == 200 and "Content-Encoding" not in headers
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "camera_recorder_build_info" in {f.name for f in parse_text(body.decode())}  # the text form of an info
    head_status, head_headers, head_body = scrape(server, "HEAD")
    assert head_status == 200 and head_body == b"" and int(head_headers["Content-Length"]) > 0


def test_a_hostile_accept_neither_fails_the_scrape_nor_grows_the_tables(server: ExporterServer) -> None:
    # prometheus_client's negotiation raises on a version that is not a number: the text format instead.
    status, headers, _ = scrape(server, Accept="application/openmetrics-text;version=abc")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for minor in range(3 * MAX_SHARED_RENDERS):  # each a content type of its own, echoed back
        status, headers, _ = scrape(server, Accept=f"application/openmetrics-text;version=1.{minor}.0")
        assert status == 200 and f"version=1.{minor}.0" in headers["Content-Type"]
    assert len(server._renders) <= MAX_SHARED_RENDERS
    assert {media for media, _ in server.scrapes} <= {"text/plain", "application/openmetrics-text"}
