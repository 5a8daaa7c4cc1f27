"""The exporter transport's table of connections: what each one is doing (Connection, ConnState), and the
bookkeeping around them that needs no HTTP (ConnectionTable): accepting under a cap below the fd limit
(evicting the least recently active idle connection to make room, parking the listener when accept() fails
for lack of descriptors), the selector registrations, deadlines and their expiry, the budget of request
bodies being read, and closing. Reading, parsing and answering are exporter/transport.py's."""

from __future__ import annotations

import enum
import errno
import logging
import math
import resource
import selectors
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

from exporter.http_messages import Request
from exporter.http_stream import StreamBuffer
from exporter.ratelimit import RateLimitedLog

# The transport's log, whichever of its modules speaks: operators see one logger name, as before the split.
log = logging.getLogger("exporter.transport")

LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn (4096 on current kernels)
# From a request's first byte (for a new connection: from accept) to its last body byte. A client that
# sends a header line every few seconds (slowloris) is cut off here, however steadily it dribbles.
REQUEST_TIMEOUT = 10.0
RECV_SIZE = 64 << 10
ACCEPT_BACKOFF_INITIAL = 0.05
ACCEPT_BACKOFF_MAX = 1.0
ACCEPT_BATCH = 64  # connections taken per wake-up, so a flood cannot starve the connections already open
# Bodies being read at once may total this much: beyond it a request with a body is answered "busy".
BODY_BUDGET_BYTES = 32 << 20
_FD_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class ConnState(enum.Enum):
    """What a connection is doing, which says which of its events the I/O thread waits for."""

    HANDSHAKE = "handshake"
    READING = "reading"
    PROCESSING = "processing"
    WRITING = "writing"
    STREAMING = "streaming"
    LINGERING = "lingering"


# States in which no handler is busy with a connection: such a connection may be evicted to make room.
_EVICTABLE = (ConnState.HANDSHAKE, ConnState.READING, ConnState.LINGERING)


class Connection:
    """One client connection's state, read and written by the I/O thread only (a handler thread reads
    `closed` and sets `stream`, before it hands the connection back)."""

    __slots__ = ("address", "body_reserved", "close_after", "closed", "deadline", "events", "idle", "inbuf",
                 "last_active", "lingered", "offset", "outbuf", "peer_done", "request", "sock", "state",
                 "stream", "unread_body")  # fmt: skip

    def __init__(self, sock: socket.socket, address: tuple[Any, ...], now: float, tls: bool) -> None:
        self.sock = sock
        self.address = address
        self.state = ConnState.HANDSHAKE if tls else ConnState.READING
        self.inbuf = bytearray()
        self.outbuf = b""
        self.offset = 0
        self.request: Request | None = None
        self.last_active = now
        self.idle = False  # between keep-alive requests, before the next one's first byte
        self.deadline = now + REQUEST_TIMEOUT
        self.events = 0
        self.close_after = False
        self.unread_body = False
        self.body_reserved = 0
        self.lingered = 0
        self.closed = False
        self.stream: StreamBuffer | None = None
        self.peer_done = False  # the client half-closed while a stream was sent: it may still read


def default_max_connections() -> int:
    """Half the soft fd limit (the other half is for FFmpeg pipes, segments and /proc), at most 1024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(8, min(1024, soft // 2))


def listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class ConnectionTable:
    """The open connections of one listener, and the selector the I/O thread waits on for them. Used from
    the I/O thread only, but for `len()`, which anyone may read."""

    def __init__(
        self,
        listener: socket.socket,
        *,
        max_connections: int,
        request_timeout: float,
        tls_context: Callable[[], ssl.SSLContext] | None,
    ) -> None:
        self.listener = listener
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.max_connections = max_connections
        self._request_timeout = request_timeout
        self._tls_context = tls_context
        self._conns: set[Connection] = set()
        self._next_deadline = math.inf
        self._accept_paused_until: float | None = None
        self._accept_backoff = ACCEPT_BACKOFF_INITIAL
        self._body_in_flight = 0
        self._ratelimited = RateLimitedLog(log)
        self.evictions = 0  # idle connections closed to make room

    def __len__(self) -> int:
        return len(self._conns)

    def listen(self) -> None:
        self.selector.register(self.listener, selectors.EVENT_READ, None)

    def wake_at(self) -> float:
        """When the I/O thread must look again though no socket is ready (inf: not before one is)."""
        if self._accept_paused_until is None:
            return self._next_deadline
        return min(self._next_deadline, self._accept_paused_until)

    def tick(self, now: float) -> None:
        """After a round of events: take the listener back once its pause is over, close what timed out."""
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self.listen()
        if now >= self._next_deadline:
            self._expire(now)

    # -- selector registration and deadlines ------------------------------------------------------------

    def watch(self, conn: Connection, events: int) -> None:
        if conn.events == events:
            return
        if conn.events == 0:
            self.selector.register(conn.sock, events, conn)
        elif events == 0:
            self.selector.unregister(conn.sock)
        else:
            self.selector.modify(conn.sock, events, conn)
        conn.events = events

    def set_deadline(self, conn: Connection, deadline: float) -> None:
        conn.deadline = deadline
        self._next_deadline = min(self._next_deadline, deadline)

    def _expire(self, now: float) -> None:
        next_deadline = math.inf
        for conn in list(self._conns):
            if conn.deadline <= now:
                log.debug("closing %s: %s timed out", conn.address, conn.state.value)
                self.close(conn)
            else:
                next_deadline = min(next_deadline, conn.deadline)
        self._next_deadline = next_deadline

    # -- the budget of bodies being read -----------------------------------------------------------------

    def reserve_body(self, conn: Connection, length: int) -> bool:
        """Count `length` bytes of body about to be read for `conn`; False if that would exceed the budget."""
        if self._body_in_flight + length > BODY_BUDGET_BYTES:
            return False
        self._body_in_flight += length
        conn.body_reserved = length
        return True

    def release_body(self, conn: Connection) -> None:
        self._body_in_flight -= conn.body_reserved
        conn.body_reserved = 0

    # -- accepting ----------------------------------------------------------------------------------

    def accept(self) -> Iterator[Connection]:
        """The connections waiting on the listener (a batch at most), each registered with its deadline
        running; the caller starts each one's handshake or reading before the next is accepted."""
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _FD_EXHAUSTED:
                    self._pause_accepting(exc)
                    return
                continue  # ECONNABORTED and the like: that client is gone, the next one may be fine
            self._accept_backoff = ACCEPT_BACKOFF_INITIAL
            if len(self._conns) >= self.max_connections and not self._evict_idle():
                sock.close()
                continue
            conn = self._add(sock, address)
            if conn is not None:
                yield conn

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors: stop polling the listener for a while (it stays readable, so polling it
        would spin), and free one descriptor by closing the least recently active idle connection."""
        delay = self._accept_backoff
        self._accept_backoff = min(ACCEPT_BACKOFF_MAX, delay * 2)
        self.selector.unregister(self.listener)
        self._accept_paused_until = time.monotonic() + delay
        self._evict_idle()
        self._ratelimited.log(
            logging.WARNING, "accept", "cannot accept connections: %s; pausing accept for %.2f s (the cameras "
            "need descriptors too: raise LimitNOFILE if this repeats)", exc.strerror or exc, delay,
        )  # fmt: skip

    def _evict_idle(self) -> bool:
        """Close the least recently active connection that no handler is busy with; False if there is none."""
        idle = [c for c in self._conns if c.state in _EVICTABLE]
        if not idle:
            return False
        self.close(min(idle, key=lambda c: c.last_active))
        self.evictions += 1
        return True

    def _add(self, sock: socket.socket, address: tuple[Any, ...]) -> Connection | None:
        now = time.monotonic()
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls_context is not None:
                sock = self._tls_context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ssl.SSLError) as exc:
            log.debug("dropping %s: %s", address, exc)
            sock.close()
            return None
        conn = Connection(sock, address, now, tls=self._tls_context is not None)
        self._conns.add(conn)
        self.set_deadline(conn, now + self._request_timeout)
        return conn

    # -- closing ----------------------------------------------------------------------------------------

    def close(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.release_body(conn)
        if conn.stream is not None:
            conn.stream.abort()  # its producer stops at its next chunk and closes what it reads from
        if conn.events:
            try:
                self.selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.events = 0
        try:
            conn.sock.close()
        except OSError:
            pass
        self._conns.discard(conn)

    def forget(self, conn: Connection) -> None:
        """Drop `conn` however far closing it got: for a connection whose very state is what failed."""
        conn.closed = True
        self._conns.discard(conn)

    def close_all(self) -> None:
        for conn in list(self._conns):
            self.close(conn)
        self.selector.close()
