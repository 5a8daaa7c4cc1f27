"""Streamed answers (a clip cut by FFmpeg, too large to hold): the handler's thread produces chunks into the
connection's outgoing buffer (a StreamBuffer) and waits while it holds more than STREAM_BUFFER_BYTES; the I/O
thread of exporter/transport.py sends them as the client takes them (chunked for HTTP/1.1, up to the close
for HTTP/1.0), and a client that goes away stops the producer at its next chunk."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from exporter.http_messages import Chunks, Request, StreamedResponse, serialize

# The transport's log, whichever of its modules speaks: operators see one logger name, as before the split.
log = logging.getLogger("exporter.transport")

# A streamed answer's producer waits while this much is queued for the client: memory per stream is
# bounded by it (plus one chunk), however slowly the client reads.
STREAM_BUFFER_BYTES = 1 << 20
STREAM_CHUNK_BYTES = 64 << 10  # read size when streaming from a file object
# A producer blocked on a full buffer looks this often whether the connection went away meanwhile.
STREAM_POLL_INTERVAL = 1.0


class StreamTarget(Protocol):
    """The side of a connection a producer sees: whether it is gone, where its stream goes, who it is."""

    closed: bool
    stream: StreamBuffer | None
    address: tuple[Any, ...]


class StreamBuffer:
    """A streamed answer's outgoing buffer, shared by its producer (a handler thread) and the I/O thread."""

    def __init__(self, head: bytes) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.pending: collections.deque[bytes] = collections.deque([head])
        self.buffered = len(head)  # queued or taken by the I/O thread but not yet sent
        self.finished = False  # the producer queued its last bytes
        self.failed = False  # the producer broke off: close once what is queued is sent
        self.aborted = False  # the connection is gone: the producer stops

    def put(self, data: bytes, conn: StreamTarget) -> bool:
        """Queue `data`, first waiting while the buffer is full; False once the connection is gone."""
        with self.cond:
            while self.buffered > STREAM_BUFFER_BYTES and not self.aborted and not conn.closed:
                self.cond.wait(STREAM_POLL_INTERVAL)
            if self.aborted or conn.closed:
                return False
            self.pending.append(data)
            self.buffered += len(data)
            return True

    def end(self, *, failed: bool) -> None:
        with self.cond:
            self.finished, self.failed = not failed, failed

    def take(self) -> bytes:
        with self.cond:
            data = b"".join(self.pending)
            self.pending.clear()
            return data

    def sent(self, count: int) -> None:
        with self.cond:
            self.buffered -= count
            if self.buffered <= STREAM_BUFFER_BYTES:
                self.cond.notify_all()

    def abort(self) -> None:
        with self.cond:
            self.aborted = True
            self.cond.notify_all()


# How a producer hands the I/O thread news for its connection: (answer or None, close after it). An answer of
# None means "this connection's stream has something new" (its first bytes, more, or its end).
HandOver = Callable[[bytes | None, bool], None]


def produce(
    conn: StreamTarget, request: Request, response: StreamedResponse, server_name: str, hand_over: HandOver
) -> None:
    """In the handler thread: send a streamed answer's head, then its chunks as the client takes them.
    HTTP/1.1 gets chunked framing (the connection may be kept alive); HTTP/1.0 knows no chunks, so its
    body ends where the connection closes."""
    chunked = request.request_version == "HTTP/1.1"
    close = request.close_connection or not chunked
    framing = "Transfer-Encoding: chunked" if chunked else None
    head = serialize(
        server_name,
        response.status,
        b"",
        response.headers,
        close,
        True,
        request.request_version,
        framing,
        streamed=True,
    )
    if request.command == "HEAD":
        _close_chunks(response.chunks)
        hand_over(head, close)
        return
    stream = StreamBuffer(head)
    conn.stream = stream
    hand_over(None, close)
    failed = False
    try:
        for chunk in _iterate(response.chunks):
            if not chunk:
                continue  # an empty chunk would end a chunked body
            framed = b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk
            if not stream.put(framed, conn):
                log.debug("stream to %s stopped: the client went away", conn.address)
                return
            hand_over(None, close)
        if chunked:
            stream.put(b"0\r\n\r\n", conn)
    except Exception as exc:
        failed = True
        # The head is out, so no 500 can follow: the client sees a body cut short, the log says why.
        log.warning("streaming %s %s broke off: %s", request.command, request.route, exc,
                    exc_info=log.isEnabledFor(logging.DEBUG))  # fmt: skip
    finally:
        _close_chunks(response.chunks)
        stream.end(failed=failed)
        hand_over(None, close)


def _iterate(chunks: Chunks) -> Iterator[bytes]:
    read = getattr(chunks, "read", None)
    if read is not None:
        return iter(lambda: read(STREAM_CHUNK_BYTES), b"")
    return iter(chunks)  # type: ignore[arg-type]


def _close_chunks(chunks: Chunks) -> None:
    close = getattr(chunks, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        log.exception("closing a streamed answer's source failed")
