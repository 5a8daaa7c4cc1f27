"""The writing side of the exporter transport's connections, in its I/O thread: sending an answer
non-blocking, sending a streamed answer as its producer queues it and the client takes it, and after the
answer either going back to reading (keep-alive) or closing, after a short lingering read when a body was
left unread, so that the client sees the answer rather than a reset."""

from __future__ import annotations

import logging
import math
import selectors
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus

from exporter.http_connections import RECV_SIZE, Connection, ConnectionTable, ConnState
from exporter.http_messages import MAX_HEAD_BYTES, serialize

# The transport's log, whichever of its modules speaks: operators see one logger name, as before the split.
log = logging.getLogger("exporter.transport")

WRITE_TIMEOUT = 30.0  # for a client to take an answer
LINGER_TIMEOUT = 2.0  # reading away an unread body after the answer, before closing
LINGER_MAX_BYTES = 1 << 20


class AnswerWriter:
    """Sends answers on the connections of `table`. `read_next` parses a request the client sent before
    its previous answer was out (pipelined), once the connection is back to reading."""

    def __init__(
        self,
        table: ConnectionTable,
        *,
        server_name: str,
        request_timeout: float,
        idle_timeout: float,
        read_next: Callable[[Connection], None],
    ) -> None:
        self._table = table
        self._server_name = server_name
        self._request_timeout = request_timeout
        self._idle_timeout = idle_timeout
        self._read_next = read_next

    def refuse(self, conn: Connection, status: HTTPStatus | int, headers: Mapping[str, str] | None = None) -> None:
        """Answer a request no handler can make sense of (or may take now), from this thread, and close."""
        status = HTTPStatus(status)
        body = f"{status.phrase}\n".encode()
        conn.unread_body = True
        fields = (("Content-Type", "text/plain"), *(headers or {}).items())
        self.start(conn, serialize(self._server_name, status, body, fields, True, False), True)

    def take_answer(self, conn: Connection, data: bytes | None, close: bool) -> None:
        if data is not None:
            self.start(conn, data, close)
        elif conn.state is ConnState.PROCESSING:
            conn.state, conn.outbuf, conn.offset, conn.close_after = ConnState.STREAMING, b"", 0, close
            self.write_stream(conn)
        elif conn.state is ConnState.STREAMING and not conn.events & selectors.EVENT_WRITE:
            self.write_stream(conn)  # else the socket is full: the next EVENT_WRITE sends the news

    def write_stream(self, conn: Connection) -> None:
        """Send what the producer queued, as much as the socket takes now. The deadline is for progress:
        a client that takes nothing for WRITE_TIMEOUT is dropped, one that reads slowly is not."""
        stream = conn.stream
        assert stream is not None
        try:
            while True:
                if conn.offset >= len(conn.outbuf):
                    conn.outbuf, conn.offset = stream.take(), 0
                    if not conn.outbuf:
                        break
                with memoryview(conn.outbuf) as view:
                    sent = conn.sock.send(view[conn.offset :])
                conn.offset += sent
                stream.sent(sent)
                conn.last_active = time.monotonic()
                self._table.set_deadline(conn, conn.last_active + WRITE_TIMEOUT)
        except (BlockingIOError, ssl.SSLWantWriteError):
            if conn.deadline == math.inf:
                self._table.set_deadline(conn, time.monotonic() + WRITE_TIMEOUT)
            self._table.watch(conn, selectors.EVENT_WRITE | self._hangup_watch(conn))
            return
        except ssl.SSLWantReadError:
            self._table.watch(conn, selectors.EVENT_READ)
            return
        except OSError as exc:
            log.debug("streaming to %s: %s", conn.address, exc)  # the client is gone (reset, broken pipe)
            self._table.close(conn)
            return
        with stream.cond:
            finished, failed = stream.finished and not stream.pending, stream.failed
        if failed:
            self._table.close(conn)  # no last chunk: the client sees the answer was cut short
        elif finished:
            conn.stream = None
            self._after_answer(conn)
        else:
            # Waiting for the producer: only a client going away is of interest meanwhile.
            conn.deadline = math.inf
            self._table.watch(conn, self._hangup_watch(conn))

    @staticmethod
    def _hangup_watch(conn: Connection) -> int:
        """While streaming, reading is how a client's reset shows before the next write would fail."""
        return 0 if conn.peer_done else selectors.EVENT_READ

    def stream_read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as exc:
            log.debug("streaming to %s: %s", conn.address, exc)  # reset: the client is gone
            self._table.close(conn)
            return
        if not data:
            # End of what the client sends, not necessarily of what it reads (a half-close after the
            # request): go on; a client that is really gone fails the next write.
            conn.peer_done = True
            self._table.watch(conn, conn.events & ~selectors.EVENT_READ)
            return
        if len(conn.inbuf) + len(data) > MAX_HEAD_BYTES:
            self._table.close(conn)
            return
        conn.inbuf += data  # a pipelined next request, parsed when the stream is done

    def start(self, conn: Connection, data: bytes, close: bool) -> None:
        conn.state = ConnState.WRITING
        conn.outbuf, conn.offset, conn.close_after = data, 0, close
        self._table.set_deadline(conn, time.monotonic() + WRITE_TIMEOUT)
        self.write(conn)

    def write(self, conn: Connection) -> None:
        view = memoryview(conn.outbuf)
        try:
            while conn.offset < len(view):
                conn.offset += conn.sock.send(view[conn.offset :])
        except (BlockingIOError, ssl.SSLWantWriteError):
            self._table.watch(conn, selectors.EVENT_WRITE)
            return
        except ssl.SSLWantReadError:
            self._table.watch(conn, selectors.EVENT_READ)
            return
        except OSError as exc:
            log.debug("writing to %s: %s", conn.address, exc)
            self._table.close(conn)
            return
        finally:
            view.release()
        conn.last_active = time.monotonic()
        self._after_answer(conn)

    def _after_answer(self, conn: Connection) -> None:
        """The answer is out: close, or (keep-alive) go back to reading the next request."""
        now = time.monotonic()
        if conn.close_after:
            if conn.unread_body:
                self._start_lingering(conn)
            else:
                self._table.close(conn)
            return
        # Keep-alive: back to reading; a pipelined next request may already be in the buffer.
        conn.state, conn.request, conn.outbuf, conn.idle = ConnState.READING, None, b"", not conn.inbuf
        self._table.set_deadline(conn, now + (self._request_timeout if conn.inbuf else self._idle_timeout))
        self._table.watch(conn, selectors.EVENT_READ)
        if conn.inbuf:
            self._read_next(conn)

    def _start_lingering(self, conn: Connection) -> None:
        """Half-close and read away what the client still sends: closing with unread data would reset the
        connection, and the client could lose our answer with it."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._table.close(conn)
            return
        conn.state = ConnState.LINGERING
        conn.inbuf = bytearray()
        self._table.set_deadline(conn, time.monotonic() + LINGER_TIMEOUT)
        self._table.watch(conn, selectors.EVENT_READ)

    def linger_read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            data = b""
        conn.lingered += len(data)
        if not data or conn.lingered > LINGER_MAX_BYTES:
            self._table.close(conn)
