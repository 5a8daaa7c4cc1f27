"""The exporter's HTTP/1.1 transport on real loopback sockets, with a trivial handler: what it parses,
answers and refuses by itself, keep-alive and pipelining, and that a busy handler holds up no one else."""

from __future__ import annotations

import http.client
import io
import re
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
from conftest import wait_for
from tls_certs import make_ca, make_cert

from exporter.transport import (
    MAX_HEAD_BYTES,
    STREAM_BUFFER_BYTES,
    STREAM_CHUNK_BYTES,
    BodyProblem,
    Headers,
    HTTPTransport,
    Request,
    _Stream,
    listen_socket,
)

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
def served() -> Iterator[tuple[App, int, HTTPTransport]]:
    app = App()
    listener = listen_socket("127.0.0.1", 0)
    transport = HTTPTransport(
        listener, app, server_name="test", max_body_bytes=MAX_BODY, slow_routes=("/slow",), idle_timeout=1.0
    )
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


def test_pipelined_keep_alive_requests_are_answered_in_order(served: tuple[App, int, HTTPTransport]) -> None:
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


def test_http_1_0_closes_unless_asked_to_keep_alive(served: tuple[App, int, HTTPTransport]) -> None:
    _, port, _ = served
    raw = exchange(port, b"GET /a HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n")
    assert statuses(raw) == [200] and b"Connection: close" in raw


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n", 400),
    ],
    ids=[
        "request-line",
        "version",
        "two-lengths",
        "negative-length",
        "huge-head",
        "too-many-headers",
        "space-before-colon",
        "folded-line",
    ],
)
def test_malformed_requests_are_refused_by_the_transport(
    served: tuple[App, int, HTTPTransport], data: bytes, status: int
) -> None:
    app, port, _ = served
    assert statuses(exchange(port, data)) == [status]
    assert app.requests == []


def test_bodies_that_are_not_read_reach_the_handler_with_the_reason(served: tuple[App, int, HTTPTransport]) -> None:
    _, port, _ = served
    too_large = exchange(port, b"POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1))
    assert b"POST /x 0 too_large" in too_large and b"Connection: close" in too_large
    chunked = exchange(port, b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert f"POST /x 0 {BodyProblem.LENGTH_REQUIRED.value}".encode() in chunked
    assert b"POST /x 0 length_required" in exchange(port, b"POST /x HTTP/1.1\r\n\r\n")


def test_a_failing_handler_is_a_500_and_the_connection_goes_on(served: tuple[App, int, HTTPTransport]) -> None:
    _, port, _ = served
    raw = exchange(port, b"GET /boom HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert statuses(raw) == [500, 200]


def test_a_handler_that_waits_holds_up_neither_other_clients_nor_scrapes(
    served: tuple[App, int, HTTPTransport],
) -> None:
    app, port, _ = served
    waiting = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(6)]
    for sock in waiting:
        sock.sendall(b"GET /slow HTTP/1.1\r\n\r\n")  # more than the slow pool's threads
    wait_for(lambda: sum(r.route == "/slow" for r in app.requests) >= 2, what="the slow handlers to be busy")
    for _ in range(10):
        assert statuses(exchange(port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", timeout=2)) == [200]
    app.release.set()
    for sock in waiting:
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        sock.close()


def test_idle_keep_alive_connections_are_closed(served: tuple[App, int, HTTPTransport]) -> None:
    _, port, transport = served
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert transport.open_connections == 1
        wait_for(lambda: transport.open_connections == 0, timeout=5, what="the idle connection to be closed")
        assert sock.recv(1) == b""


def test_at_the_connection_cap_the_least_recently_active_idle_connection_makes_room() -> None:
    app = App()
    listener = listen_socket("127.0.0.1", 0)
    transport = HTTPTransport(listener, app, server_name="test", max_body_bytes=MAX_BODY, max_connections=5)
    transport.start()
    port = listener.getsockname()[1]
    try:
        crowd = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        wait_for(lambda: transport.open_connections == 5, what="five connections")
        assert statuses(exchange(port, b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n")) == [200]
        assert transport.evictions == 1
        first = crowd[0]
        first.settimeout(5)
        assert first.recv(1) == b""  # the oldest went
        for sock in crowd:
            sock.close()
    finally:
        transport.stop()
        listener.close()


def test_the_listen_backlog_holds_a_crowd(served: tuple[App, int, HTTPTransport]) -> None:
    _, port, _ = served
    # For a listening socket, ss shows the backlog in Send-Q (socketserver's default was 5).
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    assert int(out.split()[2]) >= 128, out


def test_header_fields_are_found_whatever_their_case() -> None:
    headers = Headers.parse(b"content-TYPE: application/json\r\nX-Twice: 1\r\nx-twice: 2")
    assert headers["Content-Type"] == "application/json" and headers.get("X-TWICE") == "1"
    assert headers.get_all("x-twice") == ["1", "2"] and "CONTENT-type" in headers and headers.get("Nope") is None


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
def streaming() -> Iterator[tuple[dict[str, Source | io.BytesIO], int]]:
    sources: dict[str, Source | io.BytesIO] = {}

    def app(request: Request) -> None:
        source = sources.get(request.route)
        if source is None:
            request.respond(HTTPStatus.OK, b"plain\n", "text/plain")
            return
        request.respond_stream(HTTPStatus.OK, "application/octet-stream", {"X-Kind": "stream"}, source)

    listener = listen_socket("127.0.0.1", 0)
    transport = HTTPTransport(
        listener, app, server_name="test", max_body_bytes=MAX_BODY, pools={"streams": 2},
        pool_of=lambda request: "streams" if request.route in sources else None,
    )  # fmt: skip
    transport.start()
    yield sources, listener.getsockname()[1]
    for source in sources.values():
        if isinstance(source, Source):
            source.endless = False
    transport.stop()
    listener.close()


def test_a_streamed_answer_is_chunked_and_the_connection_goes_on(
    streaming: tuple[dict[str, Source | io.BytesIO], int],
) -> None:
    sources, port = streaming
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


def test_a_readable_file_is_streamed_too(streaming: tuple[dict[str, Source | io.BytesIO], int]) -> None:
    sources, port = streaming
    data = bytes(range(256)) * 1200  # 300 kB, several reads
    sources["/file"] = io.BytesIO(data)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/file", timeout=10) as response:
        assert response.read() == data
    wait_for(lambda: sources["/file"].closed, what="the file to be closed")


def test_http_1_0_gets_the_body_up_to_the_close(streaming: tuple[dict[str, Source | io.BytesIO], int]) -> None:
    sources, port = streaming
    source = sources["/stream"] = Source(chunks=3, size=1000)
    raw = exchange(port, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert body == source.expected()


def test_head_of_a_streamed_answer_sends_no_body_and_closes_the_source(
    streaming: tuple[dict[str, Source | io.BytesIO], int],
) -> None:
    sources, port = streaming
    source = sources["/stream"] = Source()
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        client.request("HEAD", "/stream")
        response = client.getresponse()
        assert response.status == 200 and response.read() == b""
        assert source.produced == 0 and source.closes == 1
        client.request("GET", "/after")
        assert client.getresponse().read() == b"plain\n"
    finally:
        client.close()


def test_a_producer_that_breaks_off_cuts_the_answer_short(
    streaming: tuple[dict[str, Source | io.BytesIO], int],
) -> None:
    sources, port = streaming
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
    assert source.closes == 1


def _waiting_for_room() -> bool:
    """A producer is parked in _Stream.put because its connection's buffer is full."""
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code is _Stream.put.__code__:
                return True
            frame = frame.f_back
    return False


def test_a_client_that_reads_nothing_holds_the_producer_and_its_leaving_stops_it(
    streaming: tuple[dict[str, Source | io.BytesIO], int],
) -> None:
    sources, port = streaming
    source = sources["/endless"] = Source(size=STREAM_CHUNK_BYTES, endless=True)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    try:
        sock.sendall(b"GET /endless HTTP/1.1\r\n\r\n")
        wait_for(_waiting_for_room, timeout=20, what="the producer to wait for the client")
        # Bounded: the stream's buffer, what the kernel holds on both sides, and a chunk in hand.
        send_buffer_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        assert source.produced <= STREAM_BUFFER_BYTES + send_buffer_max + (1 << 20) + 2 * STREAM_CHUNK_BYTES
        # Meanwhile the rest of the server answers.
        assert statuses(exchange(port, b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n", timeout=2)) == [200]
    finally:
        sock.close()
    wait_for(source.closed.is_set, what="the producer to stop once the client left")
    assert source.closes == 1


def test_a_client_that_half_closes_after_its_request_still_gets_the_whole_stream(
    streaming: tuple[dict[str, Source | io.BytesIO], int],
) -> None:
    sources, port = streaming
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
    transport = HTTPTransport(
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
    served: tuple[App, int, HTTPTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port, transport = served
    parse = transport._reader.parse

    def parse_with_a_bug(conn: object) -> None:
        if b"/trips-a-bug" in bytes(conn.inbuf):  # type: ignore[attr-defined]
            raise RuntimeError("an unexpected bug in one connection's handling")
        parse(conn)  # type: ignore[arg-type]

    monkeypatch.setattr(transport._reader, "parse", parse_with_a_bug)
    for _ in range(2):  # the second failure is logged rate-limited, and still closes only its connection
        assert exchange(port, b"GET /trips-a-bug HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    assert statuses(exchange(port, b"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) == [200]
    assert transport.alive() and transport.connection_failures == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the injected failure
def test_alive_is_false_once_the_io_thread_is_dead(
    served: tuple[App, int, HTTPTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = served[2]
    assert transport.alive()

    def select_fails() -> None:
        raise RuntimeError("the selector itself broke")  # outside any one connection: the loop ends

    monkeypatch.setattr(transport, "_select_once", select_fails)
    transport._wake()  # the loop is asleep in select(): let it go round into the failure
    wait_for(lambda: not transport.alive(), timeout=5, what="the I/O thread to end")
