"""The transport's pure parts, with no socket and no thread: parsing a request head, serialising an answer,
the stream buffer's bookkeeping and the connection table's body budget. The same behaviour on real
sockets is in test_transport.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http import HTTPStatus

import pytest

from exporter.http_connections import BODY_BUDGET_BYTES, Connection, ConnectionTable
from exporter.http_messages import BodyProblem, Refusal, parse_head, serialize
from exporter.http_stream import STREAM_BUFFER_BYTES, StreamBuffer

MAX_BODY = 1024
CLIENT = ("192.0.2.1", 40000)


def test_a_head_becomes_a_request_with_its_route_headers_and_keep_alive() -> None:
    request = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nACCEPT: text/plain", CLIENT, MAX_BODY)
    assert (request.command, request.path, request.route) == ("GET", "/metrics?x=1", "/metrics")
    assert request.headers["accept"] == "text/plain" and request.client_address == CLIENT
    assert not request.close_connection and request.body_problem is None and request.declared_length is None


@pytest.mark.parametrize(
    ("head", "close"),
    [
        (b"GET / HTTP/1.0", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive", False),
        (b"GET / HTTP/1.1\r\nConnection: close", True),
    ],
)
def test_http_1_0_closes_unless_kept_alive_and_1_1_when_asked(head: bytes, close: bool) -> None:
    assert parse_head(head, CLIENT, MAX_BODY).close_connection is close


@pytest.mark.parametrize(
    ("head", "problem", "length"),
    [
        (b"POST / HTTP/1.1\r\nContent-Length: 1025", BodyProblem.TOO_LARGE, 1025),
        (b"POST / HTTP/1.1\r\nContent-Length: " + b"9" * 30, BodyProblem.TOO_LARGE, MAX_BODY + 1),
        (b"POST / HTTP/1.1", BodyProblem.LENGTH_REQUIRED, None),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked", BodyProblem.LENGTH_REQUIRED, None),
        (b"POST / HTTP/1.1\r\nContent-Length: 1024", None, 1024),
    ],
    ids=["over-limit", "absurd-length", "no-length", "chunked", "at-limit"],
)
def test_a_body_the_transport_will_not_read_is_named(
    head: bytes, problem: BodyProblem | None, length: int | None
) -> None:
    request = parse_head(head, CLIENT, MAX_BODY)
    assert (request.body_problem, request.declared_length) == (problem, length)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"NONSENSE", 400),
        (b"GET / HTTP/2.0", 505),
        (b"GET / SPDY/3", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", 400),
        (b"GET / HTTP/1.1\r\nHost : x", 400),
        (b"GET / HTTP/1.1\r\n" + b"\r\n".join(b"X-%d: 1" % i for i in range(101)), 431),
    ],
)
def test_a_head_rfc_9112_rejects_is_refused_with_its_status(head: bytes, status: int) -> None:
    with pytest.raises(Refusal) as refused:
        parse_head(head, CLIENT, MAX_BODY)
    assert refused.value.status == status


def test_an_answer_carries_its_length_unless_head_only_and_says_how_the_connection_goes_on() -> None:
    fields = (("Content-Type", "text/plain"),)
    kept = serialize("test", HTTPStatus.OK, b"hello", fields, False, False, "HTTP/1.0")
    head, _, body = kept.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\nServer: test\r\nDate: ") and body == b"hello"
    assert b"\r\nContent-Length: 5" in head and b"\r\nConnection: keep-alive" in head
    closed = serialize("test", HTTPStatus.NOT_FOUND, b"gone", fields, True, True)
    assert closed.endswith(b"Content-Length: 4\r\nConnection: close\r\n\r\n")


def test_a_streamed_head_has_its_framing_and_no_length() -> None:
    chunked = serialize("t", HTTPStatus.OK, b"", (), False, True, framing="Transfer-Encoding: chunked", streamed=True)
    assert b"Transfer-Encoding: chunked" in chunked and b"Content-Length" not in chunked
    up_to_close = serialize("t", HTTPStatus.OK, b"", (), True, True, "HTTP/1.0", streamed=True)
    assert b"Content-Length" not in up_to_close and up_to_close.endswith(b"Connection: close\r\n\r\n")


class _Target:
    def __init__(self) -> None:
        self.closed = False
        self.stream: StreamBuffer | None = None
        self.address = CLIENT


def test_the_stream_buffer_counts_what_is_queued_until_it_is_sent() -> None:
    stream, target = StreamBuffer(b"head"), _Target()
    assert stream.put(b"chunk", target)
    assert stream.take() == b"headchunk" and stream.take() == b""
    assert stream.buffered == 9
    stream.sent(9)
    assert stream.buffered == 0


def test_a_stream_whose_connection_is_gone_takes_nothing_more() -> None:
    stream, target = StreamBuffer(b""), _Target()
    target.closed = True
    assert not stream.put(b"x", target)
    aborted = StreamBuffer(b"")
    aborted.abort()
    assert not aborted.put(b"x", _Target())


def test_a_producer_waits_on_a_full_buffer_until_the_client_takes_some() -> None:
    stream, target = StreamBuffer(b"x" * (STREAM_BUFFER_BYTES + 1)), _Target()
    results: list[bool] = []
    producer = threading.Thread(target=lambda: results.append(stream.put(b"more", target)))
    producer.start()
    producer.join(0.2)
    assert producer.is_alive() and not results  # held: the buffer is over its limit
    stream.sent(STREAM_BUFFER_BYTES)  # the I/O thread sent most of it: the producer may go on
    producer.join(5)
    assert results == [True] and stream.take().endswith(b"more")


@pytest.fixture
def table() -> Iterator[ConnectionTable]:
    listener = socket.socket()
    table = ConnectionTable(listener, max_connections=8, request_timeout=10.0, tls_context=None)
    yield table
    table.close_all()
    listener.close()


def test_bodies_being_read_share_one_budget_given_back_on_release(table: ConnectionTable) -> None:
    first, second = (Connection(socket.socket(), CLIENT, 0.0, tls=False) for _ in range(2))
    try:
        assert table.reserve_body(first, BODY_BUDGET_BYTES)
        assert not table.reserve_body(second, 1) and second.body_reserved == 0
        table.release_body(first)
        assert first.body_reserved == 0 and table.reserve_body(second, 1)
    finally:
        first.sock.close()
        second.sock.close()
