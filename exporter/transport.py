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

This module holds the I/O loop (HTTPTransport) and re-exports the names the exporter uses; the parts are
http_messages (requests, answers, parsing a head, serialising), http_connections (the connection table:
accept, eviction, deadlines, selector), http_reading (handshake, reading a request), http_handlers (the
handler pools and answers handed back), http_writing (sending, keep-alive, lingering close) and
http_stream (streamed answers).
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
    MAX_HEAD_BYTES,
    MAX_HEADER_FIELDS,
    BodyProblem,
    Chunks,
    Handler,
    Headers,
    Request,
    Response,
    StreamedResponse,
)
from exporter.http_reading import RequestReader
from exporter.http_stream import STREAM_BUFFER_BYTES, STREAM_CHUNK_BYTES, StreamBuffer
from exporter.http_writing import AnswerWriter
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
        self._table = ConnectionTable(
            listener,
            max_connections=max_connections or default_max_connections(),
            request_timeout=request_timeout,
            tls_context=tls_context,
        )
        self._writer = AnswerWriter(
            self._table,
            server_name=server_name,
            request_timeout=request_timeout,
            idle_timeout=idle_timeout,
            # Late-bound: the reader is made next, and knows the writer to refuse through.
            read_next=lambda conn: self._reader.parse(conn),
        )
        self._reader = RequestReader(
            self._table,
            max_body_bytes=max_body_bytes,
            request_timeout=request_timeout,
            dispatch=self._dispatch,
            refuse=self._writer.refuse,
        )
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
    def max_connections(self) -> int:
        return self._table.max_connections

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
                self._reader.handshake(conn)
            else:
                self._table.watch(conn, selectors.EVENT_READ)

    # -- per-connection events ---------------------------------------------------------------------------

    def _on_event(self, conn: Connection, mask: int) -> None:
        if conn.closed:
            return
        if conn.state is ConnState.HANDSHAKE:
            self._reader.handshake(conn)
        elif conn.state is ConnState.READING:
            self._reader.read(conn)
        elif conn.state is ConnState.WRITING:
            self._writer.write(conn)
        elif conn.state is ConnState.STREAMING:
            if mask & selectors.EVENT_READ:
                self._writer.stream_read(conn)
            if not conn.closed:
                self._writer.write_stream(conn)  # also after a read: TLS may have wanted one to go on writing
        elif conn.state is ConnState.LINGERING:
            self._writer.linger_read(conn)

    # -- handing requests to handlers and answers back --------------------------------------------

    def _dispatch(self, conn: Connection) -> None:
        request = conn.request
        assert request is not None
        pool = self._handlers.admit(request)
        if pool is None:
            # That pool's queue is full: say so at once rather than let the queue (and the wait) grow.
            self._writer.refuse(conn, HTTPStatus.SERVICE_UNAVAILABLE, {"Retry-After": "1"})
            return
        conn.state = ConnState.PROCESSING
        self._table.watch(conn, 0)
        conn.deadline = math.inf
        if not self._handlers.submit(pool, conn, request):
            self._table.close(conn)  # stopping

    def _finish_done(self) -> None:
        for conn, data, close in self._handlers.take_done():
            if not conn.closed:
                self._guarded(conn, self._writer.take_answer, conn, data, close)
