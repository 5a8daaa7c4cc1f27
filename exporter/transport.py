"""HTTP/1.1 for the exporter: one I/O thread multiplexes every connection; handlers run in small thread pools.

Why not http.server: it gives each connection a thread that blocks in recv(), so clients that connect and
dribble (slowloris) or simply stay silent hold threads, and with the socketserver backlog of 5 a crowd
of scrapers times out. Here:

- the I/O thread reads a request completely (head and body, non-blocking, under one deadline from its
  first byte) before a handler sees it, and writes the answer back non-blocking: no client can make a
  handler thread wait, so scrapes never queue behind slow clients;
- handlers run in a bounded pool; routes that may wait on something (the webhook waits for a retention
  pass) get a pool of their own so they cannot take the scrapers' threads;
- connections are capped below the fd limit (the cameras need descriptors too); at the cap the least
  recently active idle connection makes room, and when accept() fails for lack of descriptors (EMFILE,
  ENFILE) the listener is parked for a growing pause instead of being polled at 100 % CPU;
- an oversized body is never read: the handler answers at once, and the connection is closed after a
  short lingering read so the client sees the answer rather than a reset;
- a body too large to hold (a clip cut by FFmpeg) is streamed: the handler's thread produces chunks into
  the connection's outgoing buffer and waits while it holds more than STREAM_BUFFER_BYTES, the I/O thread
  sends them as the client takes them (chunked for HTTP/1.1, up to the close for HTTP/1.0), and a client
  that goes away stops the producer at its next chunk.
"""

from __future__ import annotations

import logging
import math
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection, Mapping
from http import HTTPStatus
from typing import Any

from exporter.http_connections import (
    REQUEST_TIMEOUT,
    Connection,
    ConnectionTable,
    ConnState,
    default_max_connections,
    listen_socket,
)
from exporter.http_handlers import DEFAULT_POOL, SLOW_POOL, HandlerPools
from exporter.http_messages import (
    MAX_HEADER_FIELDS,
    BodyProblem,
    Chunks,
    Handler,
    Headers,
    Refusal,
    Request,
    Response,
    StreamedResponse,
    parse_head,
    serialize,
)
from exporter.http_stream import STREAM_BUFFER_BYTES, STREAM_CHUNK_BYTES, StreamBuffer
from exporter.ratelimit import RateLimitedLog

# The names the exporter and its tests import from here, wherever they are defined now.
__all__ = [
    "DEFAULT_POOL",
    "MAX_HEADER_FIELDS",
    "MAX_HEAD_BYTES",
    "REQUEST_TIMEOUT",
    "SLOW_POOL",
    "STREAM_BUFFER_BYTES",
    "STREAM_CHUNK_BYTES",
    "BodyProblem",
    "Chunks",
    "HTTPTransport",
    "Handler",
    "Headers",
    "Request",
    "Response",
    "StreamBuffer",
    "StreamedResponse",
    "_Stream",
    "default_max_connections",
    "listen_socket",
]

log = logging.getLogger(__name__)
_Stream = StreamBuffer  # the name tests knew it by

IDLE_TIMEOUT = 75.0  # between keep-alive requests: longer than a 60 s scrape interval
WRITE_TIMEOUT = 30.0  # for a client to take an answer
LINGER_TIMEOUT = 2.0  # reading away an unread body after the answer, before closing
LINGER_MAX_BYTES = 1 << 20
MAX_HEAD_BYTES = 16 << 10
RECV_SIZE = 64 << 10


class HTTPTransport:
    """Serves `handler` on an already bound listening socket until stop()."""

    def __init__(
        self,
        listener: socket.socket,
        handler: Handler,
        *,
        server_name: str,
        max_body_bytes: int,
        tls_context: Callable[[], ssl.SSLContext] | None = None,
        slow_routes: Collection[str] = (),
        pools: Mapping[str, int] | None = None,
        pool_of: Callable[[Request], str | None] | None = None,
        queue_limits: Mapping[str, int] | None = None,
        max_connections: int | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._server_name = server_name
        self._max_body = max_body_bytes
        self._table = ConnectionTable(
            listener,
            max_connections=max_connections or default_max_connections(),
            request_timeout=request_timeout,
            tls_context=tls_context,
        )
        self._request_timeout = request_timeout
        self._idle_timeout = idle_timeout
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._handlers = HandlerPools(
            handler,
            server_name=server_name,
            wake=self._wake,
            slow_routes=slow_routes,
            pools=pools,
            pool_of=pool_of,
            queue_limits=queue_limits,
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._ratelimited = RateLimitedLog(log)
        self.connection_failures = 0  # connections closed after an unexpected error in their handling

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._table.listen()
        self._table.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._loop, name="exporter-io", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self._handlers.shutdown()

    @property
    def open_connections(self) -> int:
        return len(self._table)

    @property
    def evictions(self) -> int:
        """Idle connections closed to make room (tests look at it)."""
        return self._table.evictions

    def alive(self) -> bool:
        """True while the I/O thread runs: once it is gone nothing is accepted or answered any more, so a
        liveness check (/-/healthy, the systemd watchdog) should fail."""
        return self._thread is not None and self._thread.is_alive()

    # -- the I/O loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self._select_once()
        except Exception:
            log.exception("exporter I/O loop failed")
            raise
        finally:
            self._table.close_all()
            for sock in (self._wake_r, self._wake_w):
                sock.close()

    def _select_once(self) -> None:
        now = time.monotonic()
        wake_at = self._table.wake_at()
        # No timeout at all when nothing is pending: an idle exporter sleeps until a client comes.
        timeout = None if wake_at == math.inf else max(0.0, wake_at - now)
        for key, mask in self._table.selector.select(timeout):
            if key.fileobj is self._table.listener:
                self._accept()
            elif key.fileobj is self._wake_r:
                self._drain_wakeups()
            else:
                self._guarded(key.data, self._on_event, key.data, mask)
        self._finish_done()
        self._table.tick(time.monotonic())

    def _guarded(self, conn: Connection, action: Callable[..., None], *args: Any) -> None:
        """Run one connection's handling; a bug there (an exception nothing expected) closes that connection
        and the loop serves the others on, instead of the I/O thread dying with every connection."""
        try:
            action(*args)
        except Exception:
            self.connection_failures += 1
            if self.connection_failures == 1:  # the first with its traceback, the rest a line now and then
                log.exception("handling the connection from %s failed; closing it and serving on", conn.address)
            else:
                self._ratelimited.log(
                    logging.ERROR, "connection-failure", "handling the connection from %s failed (%d so far); "
                    "closing it and serving on", conn.address, self.connection_failures,
                )  # fmt: skip
            try:
                self._table.close(conn)
            except Exception:  # its state is what failed: forget it however far closing got
                self._table.forget(conn)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is pending already (or we are stopping)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _accept(self) -> None:
        for conn in self._table.accept():
            if conn.state is ConnState.HANDSHAKE:
                self._handshake(conn)
            else:
                self._table.watch(conn, selectors.EVENT_READ)

    # -- per-connection events ---------------------------------------------------------------------------

    def _on_event(self, conn: Connection, mask: int) -> None:
        if conn.closed:
            return
        if conn.state is ConnState.HANDSHAKE:
            self._handshake(conn)
        elif conn.state is ConnState.READING:
            self._read(conn)
        elif conn.state is ConnState.WRITING:
            self._write(conn)
        elif conn.state is ConnState.STREAMING:
            if mask & selectors.EVENT_READ:
                self._stream_read(conn)
            if not conn.closed:
                self._write_stream(conn)  # also after a read: TLS may have wanted one to go on writing
        elif conn.state is ConnState.LINGERING:
            self._linger_read(conn)

    def _handshake(self, conn: Connection) -> None:
        assert isinstance(conn.sock, ssl.SSLSocket)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._table.watch(conn, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._table.watch(conn, selectors.EVENT_WRITE)
            return
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", conn.address, exc)
            self._table.close(conn)
            return
        conn.state = ConnState.READING
        self._table.watch(conn, selectors.EVENT_READ)
        self._read(conn)  # the request may have come with the handshake's last flight

    def _read(self, conn: Connection) -> None:
        received = False
        try:
            while True:
                data = conn.sock.recv(RECV_SIZE)
                if not data:
                    self._table.close(conn)  # the client is gone; a half-sent request has nobody to answer
                    return
                if conn.idle:
                    # The first byte of a keep-alive connection's next request: its deadline starts now.
                    conn.idle = False
                    self._table.set_deadline(conn, time.monotonic() + self._request_timeout)
                conn.inbuf += data
                received = True
                # Decrypted bytes already in the TLS layer raise no event: take them now.
                if not (isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending()):
                    break
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except ssl.SSLWantWriteError:
            self._table.watch(conn, selectors.EVENT_WRITE)
        except OSError as exc:
            log.debug("reading from %s: %s", conn.address, exc)
            self._table.close(conn)
            return
        if received:
            self._parse(conn)

    def _parse(self, conn: Connection) -> None:
        if conn.request is None:
            while conn.inbuf.startswith(b"\r\n"):  # RFC 9112 2.2: ignore empty lines before a request
                del conn.inbuf[:2]
            end = conn.inbuf.find(b"\r\n\r\n")
            if end < 0:
                if len(conn.inbuf) > MAX_HEAD_BYTES:
                    self._refuse(conn, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return
            head = bytes(conn.inbuf[:end])
            del conn.inbuf[: end + 4]
            try:
                request = parse_head(head, conn.address, self._max_body)
            except Refusal as refusal:
                self._refuse(conn, refusal.status)
                return
            conn.request = request
            if request.body_problem is None and request.declared_length:
                length = request.declared_length
                if not self._table.reserve_body(conn, length):
                    request.body_problem = BodyProblem.BUSY
                elif request.headers.get("Expect", "").lower() == "100-continue" and len(conn.inbuf) < length:
                    self._send_quietly(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            if request.body_problem is not None:
                # The body is left unread: the answer goes out at once and the connection closes after it.
                request.close_connection = True
                conn.unread_body = True
                self._dispatch(conn)
                return
        request = conn.request
        length = request.declared_length or 0
        if len(conn.inbuf) < length:
            return
        request.body = bytes(conn.inbuf[:length])
        del conn.inbuf[:length]
        self._table.release_body(conn)
        self._dispatch(conn)

    def _send_quietly(self, conn: Connection, data: bytes) -> None:
        try:
            conn.sock.send(data)
        except (OSError, ssl.SSLError):
            pass  # a client that cannot take 25 bytes now sends its body anyway after a second

    def _refuse(self, conn: Connection, status: HTTPStatus | int, headers: Mapping[str, str] | None = None) -> None:
        """Answer a request no handler can make sense of (or may take now), from this thread, and close."""
        status = HTTPStatus(status)
        body = f"{status.phrase}\n".encode()
        conn.unread_body = True
        fields = (("Content-Type", "text/plain"), *(headers or {}).items())
        self._start_writing(conn, serialize(self._server_name, status, body, fields, True, False), True)

    # -- handing requests to handlers and answers back --------------------------------------------

    def _dispatch(self, conn: Connection) -> None:
        request = conn.request
        assert request is not None
        pool = self._handlers.admit(request)
        if pool is None:
            # That pool's queue is full: say so at once rather than let the queue (and the wait) grow.
            self._refuse(conn, HTTPStatus.SERVICE_UNAVAILABLE, {"Retry-After": "1"})
            return
        conn.state = ConnState.PROCESSING
        self._table.watch(conn, 0)
        conn.deadline = math.inf
        if not self._handlers.submit(pool, conn, request):
            self._table.close(conn)  # stopping

    def _finish_done(self) -> None:
        for conn, data, close in self._handlers.take_done():
            if not conn.closed:
                self._guarded(conn, self._take_answer, conn, data, close)

    def _take_answer(self, conn: Connection, data: bytes | None, close: bool) -> None:
        if data is not None:
            self._start_writing(conn, data, close)
        elif conn.state is ConnState.PROCESSING:
            conn.state, conn.outbuf, conn.offset, conn.close_after = ConnState.STREAMING, b"", 0, close
            self._write_stream(conn)
        elif conn.state is ConnState.STREAMING and not conn.events & selectors.EVENT_WRITE:
            self._write_stream(conn)  # else the socket is full: the next EVENT_WRITE sends the news

    def _write_stream(self, conn: Connection) -> None:
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

    def _stream_read(self, conn: Connection) -> None:
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

    def _start_writing(self, conn: Connection, data: bytes, close: bool) -> None:
        conn.state = ConnState.WRITING
        conn.outbuf, conn.offset, conn.close_after = data, 0, close
        self._table.set_deadline(conn, time.monotonic() + WRITE_TIMEOUT)
        self._write(conn)

    def _write(self, conn: Connection) -> None:
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
            self._parse(conn)

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

    def _linger_read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            data = b""
        conn.lingered += len(data)
        if not data or conn.lingered > LINGER_MAX_BYTES:
            self._table.close(conn)
