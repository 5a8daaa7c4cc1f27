"""The exporter's HTTP server (aiohttp, exporter/web.py) on real loopback sockets, with a trivial route: what
it answers and refuses by itself (malformed and smuggling heads, oversized heads and bodies), keep-alive
and pipelining, the connection cap, streamed answers, and that a busy route holds up no one else.

Where aiohttp's answer differs from the hand-written transport's it replaced, it is the one RFC 9112 asks
for: an HTTP/1.1 request without Host is a 400 (section 3.2), and a Content-Length too large to be a number
is a 400 (it was a 413)."""

from __future__ import annotations

import http.client
import io
import logging
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
from conftest import wait_for
from tls_certs import make_ca, make_cert

from exporter.exchange import BodyProblem, Request, headers_of
from exporter.web import MAX_LINE_BYTES, SLOW_POOL, STREAM_CHUNK_BYTES, WebServer, _Connection, listen_socket

MAX_BODY = 1024


class App:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.release = threading.Event()

    def __call__(self, request: Request) -> None:
        self.requests.append(request)
        if request.route == "/slow":
            self.release.wait(10)
        if request.route == "/boom":
            raise RuntimeError("handler bug")
        problem = request.body_problem.value if request.body_problem else "-"
        body = f"{request.command} {request.path} {len(request.body)} {problem}\n".encode()
        request.respond(HTTPStatus.OK, body, "text/plain")


@pytest.fixture
def served() -> Iterator[tuple[App, int, WebServer]]:
    app = App()
    listener = listen_socket("127.0.0.1", 0)
    transport = WebServer(
        listener, app, server_name="test", max_body_bytes=MAX_BODY, idle_timeout=1.0,
        pool_of=lambda request: SLOW_POOL if request.route == "/slow" else None,
    )  # fmt: skip
    transport.start()
    yield app, listener.getsockname()[1], transport
    app.release.set()
    transport.stop()
    listener.close()


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, half-close, and read everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def statuses(raw: bytes) -> list[int]:
    """The status of every answer in `raw` (the bodies here never contain a status line)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


def test_pipelined_keep_alive_requests_are_answered_in_order(served: tuple[App, int, WebServer]) -> None:
    _, port, _ = served
    raw = exchange(
        port,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /b?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert statuses(raw) == [200, 200, 200, 200]
    assert b"GET /a 0 -\n" in raw and b"POST /b?q=1 5 -\n" in raw and b"GET /d 0 -\n" in raw
    assert b"HEAD /c" not in raw  # HEAD: headers only, Content-Length of the body it would have had
    assert raw.count(b"Connection: close") == 1


def test_http_1_0_closes_unless_asked_to_keep_alive(served: tuple[App, int, WebServer]) -> None:
    _, port, _ = served
    raw = exchange(port, b"GET /a HTTP/1.0\r\n\r\n")
    assert statuses(raw) == [200] and b"Connection: close" in raw
    # A request after one that closes the connection is never served (llhttp refuses the batch with a 400).
    never = exchange(port, b"GET /a HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n")
    assert len(statuses(never)) == 1 and b"GET /never 0" not in never
    kept = exchange(port, b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
    assert statuses(kept) == [200, 200] and b"Connection: keep-alive" in kept and b"GET /b 0 -" in kept


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / SPDY/3\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: ²\r\n\r\n".encode("latin-1"), 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 30 + b"\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * (2 * MAX_LINE_BYTES) + b"\r\n", 431),
        (b"GET /" + b"a" * (MAX_LINE_BYTES + 1) + b" HTTP/1.1\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  continued\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
    ],
    ids=[
        "request-line",
        "version",
        "not-http",
        "no-host",
        "two-lengths",
        "negative-length",
        "superscript-two-length",
        "signed-length",
        "absurd-length",
        "length-and-chunked",
        "chunked-twice",
        "unknown-coding",
        "bare-lf-in-chunk-extension",
        "huge-head",
        "huge-request-line",
        "too-many-headers",
        "space-before-colon",
        "folded-line",
        "bare-lf",
        "nul-in-value",
        "bare-cr-in-value",
    ],
)
def test_malformed_requests_are_refused_by_the_server(
    served: tuple[App, int, WebServer], data: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    app, port, _ = served
    with caplog.at_level(logging.INFO):
        answer = exchange(port, data)
    assert statuses(answer) == [status] and b"\r\nServer: test\r\n" in answer and b"aiohttp" not in answer
    assert app.requests == []
    # Anyone can send these: no error and no traceback in the daemon's log for them.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


def test_a_request_once_refused_closes_its_connection(served: tuple[App, int, WebServer]) -> None:
    app, port, _ = served
    # What follows a refused head is not read as a request: it could be a smuggled one.
    raw = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                         b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
    assert statuses(raw) == [400] and app.requests == []


def test_bodies_that_are_not_read_reach_the_handler_with_the_reason(served: tuple[App, int, WebServer]) -> None:
    _, port, _ = served
    too_large = exchange(port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1))
    assert b"POST /x 0 too_large" in too_large and b"Connection: close" in too_large
    chunked = exchange(
        port, b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    assert f"POST /x 0 {BodyProblem.LENGTH_REQUIRED.value}".encode() in chunked
    assert b"POST /x 0 length_required" in exchange(port, b"POST /x HTTP/1.1\r\nHost: x\r\n\r\n")
    # A refused body is never read: what the client sends after it is not taken for a next request.
    raw = exchange(port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
                         + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".ljust(MAX_BODY + 1, b"x"))  # fmt: skip
    assert statuses(raw) == [200] and b"smuggled" not in raw


def test_a_body_within_the_limit_reaches_the_handler_also_after_100_continue(
    served: tuple[App, int, WebServer],
) -> None:
    _, port, _ = served
    raw = exchange(port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
    assert statuses(raw) == [100, 200] and b"POST /x 5 -" in raw
    # A body in a compression the route never asked for is handed over as sent, never inflated.
    raw = exchange(port, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello")
    assert statuses(raw) == [200] and b"POST /x 5 -" in raw


def test_a_body_that_dribbles_past_the_deadline_is_cut_off() -> None:
    app = App()
    listener = listen_socket("127.0.0.1", 0)
    transport = WebServer(listener, app, server_name="test", max_body_bytes=MAX_BODY, request_timeout=1.0)
    transport.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as sock:
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
            started = time.monotonic()
            assert sock.recv(4096) == b""  # closed, unanswered: the request never ended
            assert time.monotonic() - started < 5
        assert app.requests == []
    finally:
        transport.stop()
        listener.close()


def test_a_failing_handler_is_a_500_and_the_connection_goes_on(served: tuple[App, int, WebServer]) -> None:
    _, port, _ = served
    raw = exchange(
        port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert statuses(raw) == [500, 200]


def test_a_handler_that_waits_holds_up_neither_other_clients_nor_scrapes(
    served: tuple[App, int, WebServer],
) -> None:
    app, port, _ = served
    waiting = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(6)]
    for sock in waiting:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")  # more than the slow pool's threads
    wait_for(lambda: sum(r.route == "/slow" for r in app.requests) >= 2, what="the slow handlers to be busy")
    for _ in range(10):
        assert statuses(
            exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=2)
        ) == [200]
    app.release.set()
    for sock in waiting:
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        sock.close()


def test_idle_keep_alive_connections_are_closed(served: tuple[App, int, WebServer]) -> None:
    _, port, transport = served
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert transport.open_connections == 1
        wait_for(lambda: transport.open_connections == 0, timeout=5, what="the idle connection to be closed")
        assert sock.recv(1) == b""


def test_at_the_connection_cap_the_least_recently_active_idle_connection_makes_room() -> None:
    app = App()
    listener = listen_socket("127.0.0.1", 0)
    transport = WebServer(listener, app, server_name="test", max_body_bytes=MAX_BODY, max_connections=5)
    transport.start()
    port = listener.getsockname()[1]
    try:
        crowd = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        wait_for(lambda: transport.open_connections == 5, what="five connections")
        assert statuses(exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == [200]
        assert transport.evictions == 1
        first = crowd[0]
        first.settimeout(5)
        assert first.recv(1) == b""  # the oldest went
        for sock in crowd:
            sock.close()
    finally:
        transport.stop()
        listener.close()


def test_the_listen_backlog_holds_a_crowd(served: tuple[App, int, WebServer]) -> None:
    _, port, _ = served
    # For a listening socket, ss shows the backlog in Send-Q (socketserver's default was 5).
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    assert int(out.split()[2]) >= 128, out


def test_header_fields_are_found_whatever_their_case(served: tuple[App, int, WebServer]) -> None:
    headers = headers_of([("content-TYPE", "application/json"), ("X-Twice", "1"), ("x-twice", "2")])
    assert headers["Content-Type"] == "application/json" and headers.get("X-TWICE") == "1"
    assert headers.getall("x-twice") == ["1", "2"] and "CONTENT-type" in headers and headers.get("Nope") is None
    app, port, _ = served
    exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\nx-TWICE: 1\r\nX-Twice: 2\r\nConnection: close\r\n\r\n")
    seen = app.requests[-1].headers
    assert seen.get("X-Twice") == "1" and seen.getall("x-twice") == ["1", "2"]  # type: ignore[attr-defined]


# -- streamed answers ---------------------------------------------------------------------------------


class Source:
    """Chunks for a streamed answer that record how they were consumed: how many bytes were taken, whether
    close() came (exactly once), and `fail_after` chunks then an error, or `endless` chunks."""

    def __init__(self, chunks: int = 20, size: int = 10_000, *, fail_after: int | None = None, endless: bool = False):
        self.chunks, self.size, self.fail_after, self.endless = chunks, size, fail_after, endless
        self.produced = 0
        self.closes = 0
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        index = 0
        while self.endless or index < self.chunks:
            if self.fail_after is not None and index == self.fail_after:
                raise RuntimeError("the producer broke")
            chunk = bytes([65 + index % 26]) * self.size
            self.produced += len(chunk)
            index += 1
            yield chunk

    def expected(self) -> bytes:
        return b"".join(bytes([65 + i % 26]) * self.size for i in range(self.chunks))

    def close(self) -> None:
        self.closes += 1
        self.closed.set()


@pytest.fixture
def streaming() -> Iterator[tuple[dict[str, Source | io.BytesIO], int, WebServer]]:
    sources: dict[str, Source | io.BytesIO] = {}

    def app(request: Request) -> None:
        source = sources.get(request.route)
        if source is None:
            request.respond(HTTPStatus.OK, b"plain\n", "text/plain")
            return
        request.respond_stream(HTTPStatus.OK, "application/octet-stream", {"X-Kind": "stream"}, source)

    listener = listen_socket("127.0.0.1", 0)
    transport = WebServer(
        listener, app, server_name="test", max_body_bytes=MAX_BODY, pools={"streams": 2},
        pool_of=lambda request: "streams" if request.route in sources else None,
    )  # fmt: skip
    transport.start()
    yield sources, listener.getsockname()[1], transport
    for source in sources.values():
        if isinstance(source, Source):
            source.endless = False
    transport.stop()
    listener.close()


def test_a_streamed_answer_is_chunked_and_the_connection_goes_on(
    streaming: tuple[dict[str, Source | io.BytesIO], int, WebServer],
) -> None:
    sources, port, _ = streaming
    source = sources["/stream"] = Source()
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        client.request("GET", "/stream")
        response = client.getresponse()
        assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
        assert response.getheader("Content-Length") is None and response.getheader("X-Kind") == "stream"
        assert response.read() == source.expected()
        wait_for(source.closed.is_set, what="the source to be closed")
        assert source.closes == 1
        client.request("GET", "/after")  # the same connection: the last chunk ended the answer
        assert client.getresponse().read() == b"plain\n"
    finally:
        client.close()


def test_a_readable_file_is_streamed_too(streaming: tuple[dict[str, Source | io.BytesIO], int, WebServer]) -> None:
    sources, port, _ = streaming
    data = bytes(range(256)) * 1200  # 300 kB, several reads
    sources["/file"] = io.BytesIO(data)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/file", timeout=10) as response:
        assert response.read() == data
    wait_for(lambda: sources["/file"].closed, what="the file to be closed")


def test_http_1_0_gets_the_body_up_to_the_close(
    streaming: tuple[dict[str, Source | io.BytesIO], int, WebServer],
) -> None:
    sources, port, _ = streaming
    source = sources["/stream"] = Source(chunks=3, size=1000)
    raw = exchange(port, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    # aiohttp answers an HTTP/1.0 request in HTTP/1.0 (RFC 9110 2.5 allows either).
    assert head.startswith(b"HTTP/1.0 200") and b"Connection: close" in head
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert body == source.expected()


def test_head_of_a_streamed_answer_sends_no_body_and_closes_the_source(
    streaming: tuple[dict[str, Source | io.BytesIO], int, WebServer],
) -> None:
    sources, port, _ = streaming
    source = sources["/stream"] = Source()
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        client.request("HEAD", "/stream")
        response = client.getresponse()
        assert response.status == 200 and response.read() == b""
        wait_for(source.closed.is_set, what="the source to be closed")
        assert source.produced == 0 and source.closes == 1
        client.request("GET", "/after")
        assert client.getresponse().read() == b"plain\n"
    finally:
        client.close()


def test_a_producer_that_breaks_off_cuts_the_answer_short(
    streaming: tuple[dict[str, Source | io.BytesIO], int, WebServer],
) -> None:
    sources, port, _ = streaming
    source = sources["/stream"] = Source(fail_after=3)
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        client.request("GET", "/stream")
        response = client.getresponse()
        assert response.status == 200
        # No last chunk: the client knows the body is incomplete instead of taking it for the whole.
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        client.close()
    wait_for(source.closed.is_set, what="the source to be closed")  # in the stream's pool, after the loop's cut
    assert source.closes == 1


def _waiting_for_room(transport: WebServer) -> bool:
    """A stream waits for its client: the socket's buffer is full, and no next chunk is produced meanwhile."""
    return any(stream.held() for stream in list(transport.streams))


def test_a_client_that_reads_nothing_holds_the_producer_and_its_leaving_stops_it(
    streaming: tuple[dict[str, Source | io.BytesIO], int, WebServer],
) -> None:
    sources, port, transport = streaming
    source = sources["/endless"] = Source(size=STREAM_CHUNK_BYTES, endless=True)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    try:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: _waiting_for_room(transport), timeout=20, what="the producer to wait for the client")
        # Bounded: what the kernel holds on both sides, the transport's 64 KiB high-water mark, a chunk in hand.
        send_buffer_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        produced = source.produced
        assert produced <= send_buffer_max + (1 << 20) + 2 * STREAM_CHUNK_BYTES
        assert statuses(exchange(port, b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=2)) == [200]
        assert source.produced == produced  # held: nothing more is produced while the client takes nothing
    finally:
        sock.close()
    wait_for(source.closed.is_set, what="the producer to stop once the client left")
    assert source.closes == 1


def test_a_client_that_half_closes_after_its_request_still_gets_the_whole_stream(
    streaming: tuple[dict[str, Source | io.BytesIO], int, WebServer],
) -> None:
    sources, port, _ = streaming
    # More than every buffer on the way, so the client's end of sending arrives while the stream is going.
    source = sources["/stream"] = Source(chunks=100, size=STREAM_CHUNK_BYTES)
    raw = exchange(port, b"GET /stream HTTP/1.0\r\n\r\n", timeout=30)
    assert raw.partition(b"\r\n\r\n")[2] == source.expected()


def test_a_stream_over_tls_arrives_whole(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    pair = make_cert(tmp_path, "server", ca)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pair.cert, pair.key)
    source = Source(chunks=60, size=STREAM_CHUNK_BYTES)  # more than the buffers: writing waits on TLS

    def app(request: Request) -> None:
        request.respond_stream(HTTPStatus.OK, "application/octet-stream", None, source)

    listener = listen_socket("127.0.0.1", 0)
    transport = WebServer(
        listener, app, server_name="test", max_body_bytes=MAX_BODY, tls_context=lambda: server_context
    )
    transport.start()
    client = http.client.HTTPSConnection(
        "127.0.0.1", listener.getsockname()[1], timeout=30, context=ssl.create_default_context(cafile=str(ca.cert))
    )
    try:
        client.request("GET", "/stream")
        response = client.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked" and response.read() == source.expected()
    finally:
        client.close()
        transport.stop()
        listener.close()


def test_a_bug_in_one_connections_handling_closes_it_and_the_loop_serves_on(
    served: tuple[App, int, WebServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port, transport = served
    data_received = _Connection.data_received

    def data_received_with_a_bug(self: _Connection, data: bytes) -> None:
        if b"/trips-a-bug" in data:
            raise RuntimeError("an unexpected bug in one connection's handling")
        data_received(self, data)

    monkeypatch.setattr(_Connection, "data_received", data_received_with_a_bug)
    for _ in range(2):  # the second failure is logged rate-limited, and still closes only its connection
        assert exchange(port, b"GET /trips-a-bug HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    assert statuses(exchange(port, b"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == [200]
    assert transport.alive() and transport.connection_failures == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the injected failure
def test_alive_is_false_once_the_io_thread_is_dead(served: tuple[App, int, WebServer]) -> None:
    transport = served[2]
    assert transport.alive()
    loop = transport._loop
    assert loop is not None
    loop.call_soon_threadsafe(loop.stop)  # the loop ends with its work undone, as after a bug in it
    wait_for(lambda: not transport.alive(), timeout=5, what="the I/O thread to end")


@pytest.fixture
def impatient_streaming() -> Iterator[tuple[dict[str, Source], int, WebServer]]:
    """A server whose write timeout is a quarter of a second, for clients slower than that."""
    sources: dict[str, Source] = {}

    def app(request: Request) -> None:
        request.respond_stream(HTTPStatus.OK, "application/octet-stream", {}, sources[request.route])

    listener = listen_socket("127.0.0.1", 0)
    transport = WebServer(listener, app, server_name="test", max_body_bytes=MAX_BODY, write_timeout=0.25)
    transport.start()
    yield sources, listener.getsockname()[1], transport
    transport.stop()
    listener.close()


def _read_paced(sock: socket.socket, rate: int, until: Callable[[bytes], bool], limit: float) -> bytes:
    """Read at about `rate` bytes a second (a slow client, the pace is the point) until `until` holds."""
    got = b""
    started = time.monotonic()
    while not until(got) and time.monotonic() - started < limit:
        try:
            chunk = sock.recv(rate // 20)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
        time.sleep(0.05)  # the client's pace, not a synchronisation
    return got


def test_a_slow_but_steady_reader_keeps_its_stream_past_the_write_timeout(
    impatient_streaming: tuple[dict[str, Source], int, WebServer],
) -> None:
    sources, port, _ = impatient_streaming
    source = sources["/clip"] = Source(chunks=16, size=STREAM_CHUNK_BYTES)  # 1 MiB
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(10)
    started = time.monotonic()
    try:
        sock.sendall(b"GET /clip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        # 200 kB/s: a timeout's worth (50 kB) is less than half of what the kernel buffers, so one write of a
        # chunk waits longer than the timeout while the client takes bytes all along.
        body = _read_paced(sock, 200_000, lambda got: got.endswith(b"0\r\n\r\n"), limit=60)
    finally:
        sock.close()
    # Seconds longer than the write timeout, and every byte there: the client's progress is what counts,
    # however long one chunk waits behind what the kernel's buffers hold.
    assert time.monotonic() - started > 3
    assert body.endswith(b"0\r\n\r\n") and body.count(b"P" * STREAM_CHUNK_BYTES) == 1, len(body)
    wait_for(source.closed.is_set, what="the stream to end")


def test_a_reader_that_stops_is_dropped_after_the_write_timeout(
    impatient_streaming: tuple[dict[str, Source], int, WebServer],
) -> None:
    sources, port, _ = impatient_streaming
    source = sources["/clip"] = Source(size=STREAM_CHUNK_BYTES, endless=True)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", port))
    try:
        sock.sendall(b"GET /clip HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(65536)
        wait_for(source.closed.is_set, timeout=30, what="the stream of a client that stopped reading to be dropped")
    finally:
        source.endless = False
        sock.close()
