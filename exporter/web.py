"""HTTP for the exporter, on aiohttp: one thread runs an event loop that does every connection's I/O; the
routes (plain functions of exporter/exchange.py's Request) run in small bounded thread pools, so that a
route that waits (bcrypt, a retention pass, FFmpeg) never holds up the loop or a scrape.

aiohttp parses and writes HTTP/1.1 (llhttp, fuzzed and CVE-tracked: keep-alive, pipelining, chunked
framing, smuggling, oversized lines and headers). What it does not do, and an exporter on a camera box
needs, is here:

- a deadline for the whole request (REQUEST_TIMEOUT from accept, or from a kept-alive connection's next
  first byte, to its last body byte): a client that dribbles a header line every few seconds (slowloris)
  is cut off however steadily it dribbles; an idle kept-alive connection is closed after IDLE_TIMEOUT;
- connections capped below the fd limit, and within a descriptor budget that keeps a reserve for the
  cameras' FFmpeg starts, both read from the limit of the moment (DescriptorBudget): at the cap or the
  reserve the least recently active idle connection makes room (or the new one is closed); when accept()
  fails for lack of descriptors anyway (EMFILE) asyncio parks the listener for a second (no busy loop)
  and idle connections are shed;
- request bodies only for routes that take them, with a known length, under a limit and a shared budget,
  and only once the request's credentials are known good (may_read_body); a body that is refused is never
  read: the route answers at once and the connection closes;
- streamed answers (a clip cut by FFmpeg) with back-pressure: each chunk is produced in the route's pool
  only once the client has taken the previous ones, a client that takes nothing for WRITE_TIMEOUT is
  dropped (what it takes from the socket's buffers counts, not one write's wait), and a client that goes
  away stops the producer;
- a malformed request is a 4xx and one debug line, not an ERROR with a traceback;
- TLS handshakes off the loop (exporter/tls.py): the listener is plain TCP and each handshake's crypto runs
  in a pool of two threads, so a handshake flood does not delay the scrapes of connections already made. A
  connection in its handshake counts against the cap and the descriptor budget like any other, and is the
  first to make room (the oldest first): it has proven nothing yet, an idle kept-alive connection has.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import resource
import socket
import ssl
import struct
import termios
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from exporter.exchange import BodyProblem, Chunks, Request, Response, StreamedResponse
from exporter.metrics import HTTP_CODE_CLASSES
from exporter.ratelimit import RateLimitedLog
from exporter.tls import HandshakePool, TLSHandshake

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn (4096 on current kernels)
ACCEPT_BURST = 16  # connections asyncio accepts in a row before the descriptor budget sees them
BUDGET_CHECK_SECONDS = 1.0  # how often open connections are held against the descriptor budget
# From a request's first byte (for a new connection: from accept) to its last body byte.
REQUEST_TIMEOUT = 10.0
IDLE_TIMEOUT = 75.0  # between keep-alive requests: longer than a 60 s scrape interval
WRITE_TIMEOUT = 30.0  # for a client to take an answer, or the next piece of a streamed one
LINGER_TIMEOUT = 2.0  # reading away a refused body after the answer, before closing
STOP_GRACE_SECONDS = 2.0
MAX_HEADER_FIELDS = 100  # as http.client allows
MAX_LINE_BYTES = 8190  # a request line or one header field (aiohttp's default, Apache's too)
# Bodies being read at once may total this much: beyond it a request with a body is answered "busy".
BODY_BUDGET_BYTES = 32 << 20
STREAM_CHUNK_BYTES = 64 << 10  # read size when streaming from a file object
# The scrapers' pool. Concurrent scrapes share one rendering (server.SharedRender), but only those that
# have a thread to wait in: with 4 threads, 200 scrapers cost 50 renderings; with 16, about 13. A waiting
# thread holds no GIL, so the extra threads cost a little memory, not CPU.
HANDLER_THREADS = 16
SLOW_HANDLER_THREADS = 2
DEFAULT_POOL, SLOW_POOL = "default", "slow"
_FD_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# How long asyncio parks a listener whose accept() ran out of descriptors (asyncio.constants).
ACCEPT_RETRY_DELAY = 1.0
_BODY_METHODS = ("POST", "PUT", "PATCH")

Route = Callable[[Request], None]
_UNSUPPORTED_VERSION = (
    "HTTP/1.1 505 HTTP Version Not Supported\r\nServer: {server}\r\nContent-Type: text/plain\r\n"
    "Content-Length: 27\r\nConnection: close\r\n\r\nHTTP Version Not Supported\n"
)


def default_max_connections() -> int:
    """Half the soft fd limit (the other half is for FFmpeg pipes, segments and /proc), at most 1024. Read
    at each accept: a limit changed on the running daemon (`prlimit --pid`) applies to the next connection."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(8, min(1024, soft // 2))


def _soft_fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_descriptors() -> int:
    """Descriptors this process has open now (/proc/self/fd, less the one listing it)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1
    except OSError:
        return 0


class DescriptorBudget:
    """How many descriptors HTTP may still take: the soft RLIMIT_NOFILE read now, less those open, less the
    reserve kept for recording (FFmpeg's pipes and segment files, /proc reads, the index). Connections are
    accepted only while this is positive, so a flood never takes the descriptors an FFmpeg (re)start needs.

    Counting /proc/self/fd costs a listing; it is redone at most every SAMPLE_SECONDS, and in between the
    connections opened or closed since are added to the last count (what else opens descriptors, FFmpeg
    starts, is what the reserve is for)."""

    SAMPLE_SECONDS = 0.25

    def __init__(self, reserve: Callable[[], int], clock: Callable[[], float]) -> None:
        self._reserve = reserve
        self._clock = clock
        self._sampled_at = -1e18
        self._open = 0
        self._connections_then = 0

    def free(self, connections: int) -> int:
        """Descriptors left for HTTP before the reserve is touched (negative: that many too many are open)."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 1 << 30
        now = self._clock()
        if now - self._sampled_at >= self.SAMPLE_SECONDS:
            self._sampled_at, self._open, self._connections_then = now, open_descriptors(), connections
        in_use = self._open + connections - self._connections_then
        return soft - in_use - self._reserve()


def listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class _Connection(RequestHandler):
    """aiohttp's protocol for one connection, with the request deadline and what eviction needs to know."""

    def __init__(self, manager: _Server, *, request_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._request_timeout = request_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self.busy = False  # a request of this connection is being handled or answered
        self.bytes_while_busy = False  # the client sent more (a pipelined request) meanwhile
        self.peer_done = False  # the client half-closed: answer what it sent, then close
        self.last_active = self._loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_active = self._loop.time()
        if self.busy:
            self.bytes_while_busy = True
        elif self._deadline is None and data:
            self._arm()  # the first byte of a kept-alive connection's next request
        super().data_received(data)

    def eof_received(self) -> bool:
        """The client has sent all it will (a half-close after its requests, as `nc -N` or a shell's
        `exec 3<>` does): its requests in hand are still answered, then the connection closes."""
        self.peer_done = True
        waiter = self._waiter
        if waiter is not None and not waiter.done() and not self._messages:
            self.force_close()  # idle, or a request sent halfway: nobody to answer
        # Keep the sending side open; TLS has no half-close (asyncio warns if asked to keep it open).
        return self.transport is not None and self.transport.get_extra_info("sslcontext") is None

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self._loop.call_later(self._request_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.busy:
            log.debug("closing %s: its request took more than %g s", self.peer, self._request_timeout)
            self.force_close()

    def remaining(self) -> float:
        """Seconds left for the current request's body."""
        if self._deadline is None:
            return self._request_timeout
        return max(0.0, self._deadline.when() - self._loop.time())

    def begin(self) -> None:
        """The request is read: no deadline while it is handled (the answer has its write timeout)."""
        self._disarm()
        self.busy = True

    @property
    def peer(self) -> Any:
        return self.transport.get_extra_info("peername") if self.transport is not None else None

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        # Every answer passes here, aiohttp's own (a malformed request's 400) included: counted by class.
        self._guard.answered(resp.status)
        try:
            return await asyncio.wait_for(super().finish_response(request, resp, start_time), WRITE_TIMEOUT)
        except asyncio.TimeoutError:
            log.debug("closing %s: it took no answer for %g s", self.peer, WRITE_TIMEOUT)
            self.force_close()
            return resp, True
        finally:
            self.busy = False
            self.last_active = self._loop.time()
            if self.peer_done and not self._messages:
                self.close()  # the last answer the client will read: the connection closes after it
            elif self.bytes_while_busy:
                self.bytes_while_busy = False
                self._arm()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # A request line or header over the limit is 431 (RFC 6585), not llhttp's plain 400.
        if isinstance(exc, LineTooLong) or (isinstance(exc, HttpProcessingError) and "Too many" in str(exc)):
            status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
        response = super().handle_error(request, status, exc, message)
        response.headers["Server"] = self._guard.server_name  # not aiohttp's name and version
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            # Anyone can send garbage: a line for debugging, not an error with a traceback per request.
            log.debug("refused a malformed request from %s: %s", self.peer, exc)
            return
        super().log_exception(*args, **kw)


class _Server(web.Server):
    """aiohttp's low-level server, making _Connection protocols and keeping their number under the cap and
    within the descriptor budget."""

    def __init__(
        self,
        handler: Any,
        *,
        server_name: str,
        max_connections: int | None,
        request_timeout: float,
        budget: DescriptorBudget | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.server_name = server_name
        self._max_connections = max_connections
        self._request_timeout = request_timeout
        self._budget = budget
        self.open: set[_Connection] = set()
        self.handshaking: set[TLSHandshake] = set()  # TLS connections not yet handed to a _Connection
        self.evictions = 0  # idle connections closed to make room
        self.refusals = 0  # new connections closed at once: no room, and nothing idle to make room
        # Answers sent, by status class; every key there from the start, so a scrape's copy never races an insert.
        self.responses: Counter[str] = Counter(dict.fromkeys(HTTP_CODE_CLASSES, 0))

    def answered(self, status: int) -> None:
        code = f"{status // 100}xx"
        if code in HTTP_CODE_CLASSES:
            self.responses[code] += 1

    @property
    def max_connections(self) -> int:
        return self._max_connections or default_max_connections()

    def __call__(self) -> _Connection:
        return _Connection(self, loop=self._loop, request_timeout=self._request_timeout, **self._kwargs)

    def shortfall(self) -> int:
        """How many connections too many are open: over the cap, or into the descriptors kept for recording."""
        connections = len(self.open) + len(self.handshaking)
        over = connections - self.max_connections
        if self._budget is not None:
            over = max(over, -self._budget.free(connections))
        return over

    def _make_room(self) -> bool:
        need = self.shortfall() + 1  # room for this one too
        while need > 0 and self.evict_idle():
            need -= 1
        if need > 0:
            self.refusals += 1
            return False
        return True

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        assert isinstance(handler, _Connection)
        if not self._make_room():
            transport.close()  # every connection is busy: this one waits for none of them
            return
        self.open.add(handler)
        super().connection_made(handler, transport)

    def admit_handshake(self, handshake: TLSHandshake) -> bool:
        """A TLS connection just accepted: it counts from now, through its handshake."""
        if not self._make_room():
            return False
        self.handshaking.add(handshake)
        return True

    def handshake_ended(self, handshake: TLSHandshake) -> None:
        self.handshaking.discard(handshake)

    def shed(self) -> int:
        """Close idle connections until none is over the budget; how many were closed."""
        closed = 0
        while self.shortfall() > 0 and self.evict_idle():
            closed += 1
        return closed

    def forget(self, handler: _Connection) -> None:
        self.open.discard(handler)

    def evict_idle(self) -> bool:
        """Close the connection in its TLS handshake the longest or else the least recently active connection no
        request is being handled on; False if there is none."""
        if self.handshaking:
            oldest_handshake = min(self.handshaking, key=lambda h: h.started_at)
            self.handshaking.discard(oldest_handshake)
            oldest_handshake.cut("making room for a new connection")
            self.evictions += 1
            return True
        idle = [c for c in self.open if not c.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.last_active)
        self.open.discard(oldest)
        oldest.force_close()
        self.evictions += 1
        return True


@dataclass(eq=False)
class StreamProgress:
    """A streamed answer being sent, for tests and benchmarks: where its chunks are produced, how much was
    sent, and whether it is waiting for its client to take what was sent."""

    pool: str
    writing_paused: Callable[[], bool]
    sent_bytes: int = 0
    waiting_for_client: bool = False

    def held(self) -> bool:
        """Waiting for a client that takes nothing: the socket's buffer is full and the next chunk waits."""
        return self.waiting_for_client and self.writing_paused()


class WebServer:
    """Serves `route` on an already bound listening socket, from its own thread, until stop()."""

    def __init__(
        self,
        listener: socket.socket,
        route: Route,
        *,
        server_name: str,
        max_body_bytes: int,
        tls_context: Callable[[], ssl.SSLContext] | None = None,
        pools: Mapping[str, int] | None = None,
        pool_of: Callable[[Request], str | None] | None = None,
        queue_limits: Mapping[str, int] | None = None,
        max_connections: int | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        fd_reserve: Callable[[], int] | None = None,
        may_read_body: Callable[[Request], bool] | None = None,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self._listener = listener
        self._route = route
        self._server_name = server_name
        self._max_body = max_body_bytes
        self._tls_context = tls_context
        self._pool_of = pool_of
        # None: half the soft fd limit, read at each accept (default_max_connections).
        self._max_connections = max_connections
        self._fd_reserve = fd_reserve
        # Whether a request's credentials are good enough to read its body: asked in the I/O thread before
        # any of the body budget is spent, so unauthenticated clients cannot crowd out Alertmanager's calls.
        self._may_read_body = may_read_body
        self._write_timeout = write_timeout
        self._request_timeout = request_timeout
        self._idle_timeout = idle_timeout
        sizes = {DEFAULT_POOL: HANDLER_THREADS, SLOW_POOL: SLOW_HANDLER_THREADS, **(pools or {})}
        self._pools = {
            name: ThreadPoolExecutor(threads, thread_name_prefix=f"exporter-{name}") for name, threads in sizes.items()
        }
        # Pools whose requests (queued and running) are capped: beyond the cap a request is answered 503 at
        # once. For work a client can ask for at will, such as bcrypt on new credentials.
        self._queue_free = dict(queue_limits or {})
        self._body_in_flight = 0
        self.streams: set[StreamProgress] = set()  # read from other threads: copy before iterating
        self._loop: asyncio.AbstractEventLoop | None = None
        self.handshakes: HandshakePool | None = None  # with TLS: its counters, for tests and benchmarks
        self._server: _Server | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._ratelimited = RateLimitedLog(log)
        self.connection_failures = 0  # connections closed after an unexpected error in their handling
        self._route_failures = 0
        self._traced: set[str] = set()  # routes whose failure's traceback was logged once

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="exporter-io", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self, timeout: float = 5.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass  # the loop closed meanwhile
        if self._thread is not None:
            self._thread.join(timeout)
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    def alive(self) -> bool:
        """True while the I/O thread runs its loop: once it is gone nothing is accepted or answered any more,
        so a liveness check (/-/healthy, the systemd watchdog) should fail."""
        loop = self._loop
        return self._thread is not None and self._thread.is_alive() and loop is not None and loop.is_running()

    @property
    def open_connections(self) -> int:
        """Connections open, those in their TLS handshake included."""
        return len(self._server.open) + len(self._server.handshaking) if self._server is not None else 0

    @property
    def max_connections(self) -> int:
        if self._server is not None:
            return self._server.max_connections
        return self._max_connections or default_max_connections()

    def descriptors_free(self) -> int:
        """Descriptors left before the reserve (fd_reserve) is touched, counted now; large without a reserve."""
        if self._fd_reserve is None:
            return 1 << 30
        return DescriptorBudget(self._fd_reserve, lambda: 0.0).free(0)

    def responses(self) -> dict[str, int]:
        """Answers sent so far, by status class (for camera_recorder_http_responses_total)."""
        return dict(self._server.responses) if self._server is not None else {}

    @property
    def refusals(self) -> int:
        return self._server.refusals if self._server is not None else 0

    @property
    def evictions(self) -> int:
        return self._server.evictions if self._server is not None else 0

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if not self._started.is_set():
                self._start_error = exc
            else:
                log.exception("exporter I/O loop failed")
            raise
        finally:
            self._started.set()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
        self._loop, self._stopping = loop, asyncio.Event()
        budget = DescriptorBudget(self._fd_reserve, loop.time) if self._fd_reserve is not None else None
        server = self._server = _Server(
            self._handle,
            server_name=self._server_name,
            max_connections=self._max_connections,
            request_timeout=self._request_timeout,
            budget=budget,
            keepalive_timeout=self._idle_timeout,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
            max_headers=MAX_HEADER_FIELDS,
            lingering_time=LINGER_TIMEOUT,
            # A body is handed to its route as sent: no route takes compressed bodies, and a bomb is not
            # inflated on the way.
            auto_decompress=False,
            access_log=None,
        )
        # At stop, requests in flight get a moment to finish; a clip still streaming is cut (the daemon stops).
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=STOP_GRACE_SECONDS)
        await runner.setup()
        handshakes = HandshakePool() if self._tls_context is not None else None
        self.handshakes = handshakes
        listening = await loop.create_server(
            self._protocol_factory(server, handshakes),
            sock=self._listener,
            # asyncio accepts up to `backlog` connections in a row before any of them is checked against the
            # descriptor budget: a small burst, so a flood overshoots the reserve by ACCEPT_BURST at most.
            backlog=ACCEPT_BURST,
        )
        self._listener.listen(LISTEN_BACKLOG)  # the kernel's queue stays long (create_server set it to the burst)
        watching = asyncio.ensure_future(self._watch_budget(server)) if budget is not None else None
        self._started.set()
        try:
            await self._stopping.wait()
        finally:
            if watching is not None:
                watching.cancel()
            listening.close()
            if handshakes is not None:
                for handshake in list(server.handshaking):
                    handshake.cut("the server is stopping")
                handshakes.shutdown()
            await runner.cleanup()

    def _protocol_factory(self, server: _Server, handshakes: HandshakePool | None) -> Callable[[], asyncio.Protocol]:
        """Plain HTTP: aiohttp's protocol on the socket. TLS: a handshake first, its crypto in `handshakes`'
        threads; each one starts from the source's context of the moment, so a renewed certificate written in
        place applies to new connections without a restart."""
        source = self._tls_context
        if source is None or handshakes is None:
            return server

        def handshake() -> asyncio.Protocol:
            return TLSHandshake(
                server(),
                source,
                handshakes,
                # A TLS client that never finishes its handshake is cut off like one that never sends a request.
                timeout=self._request_timeout,
                admit=server.admit_handshake,
                release=server.handshake_ended,
            )

        return handshake

    async def _watch_budget(self, server: _Server) -> None:
        """Once a second: connections over the budget for two looks in a row (the limit was lowered on the
        running daemon, say, while idle connections hold on and none arrives to trigger shedding) are shed,
        so recording gets its descriptors back without waiting for their idle timeouts."""
        short_before = False
        while True:
            await asyncio.sleep(BUDGET_CHECK_SECONDS)
            short = server.shortfall() > 0
            if short and short_before:
                shed = server.shed()
                if shed:
                    self._ratelimited.log(logging.WARNING, "shed", "closed %d idle connections: the descriptors "
                                          "left are the cameras' (fd limit %s)", shed, _soft_fd_limit())  # fmt: skip
            short_before = short

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _FD_EXHAUSTED:
            # asyncio has parked the listener already; an idle connection's descriptor is one more for later.
            if self._server is not None and not self._server.shed():
                self._server.evict_idle()
            self._ratelimited.log(
                logging.WARNING, "accept", "cannot accept connections: %s; pausing accept for %.2f s (the cameras "
                "need descriptors too: raise LimitNOFILE if this repeats)", exc.strerror or exc, ACCEPT_RETRY_DELAY,
            )  # fmt: skip
            return
        if exc is not None and "protocol" in context:
            # A bug in one connection's handling: asyncio has closed that connection, the loop serves on.
            self.connection_failures += 1
            message = "handling the connection from %s failed (%d so far); closing it and serving on"
            peer = context["transport"].get_extra_info("peername") if "transport" in context else None
            if self.connection_failures == 1:  # the first with its traceback, the rest a line now and then
                log.error(message, peer, self.connection_failures, exc_info=exc)
            else:
                self._ratelimited.log(logging.ERROR, "connection-failure", message, peer, self.connection_failures)
            return
        loop.default_exception_handler(context)

    # -- one request ------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = request.protocol
        assert isinstance(conn, _Connection)
        if request.version.major != 1:
            # llhttp reads "HTTP/2.0" as a version like any other, and aiohttp answers in the request's
            # version: this one answer is written here, in ours (RFC 9110 6.2), and the connection closed.
            if request.transport is not None:
                request.transport.write(_UNSUPPORTED_VERSION.format(server=self._server_name).encode("latin-1"))
            conn.force_close()
            return web.Response(status=HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        exchange = Request(request.method, request.raw_path, version, request.headers, tuple(peer or ("", 0)))
        exchange.body_problem = self._body_problem(request)
        if exchange.body_problem is None and request.content_length and not self._authenticated(exchange):
            exchange.body_problem = BodyProblem.UNAUTHENTICATED
        if exchange.body_problem is None and request.content_length:
            try:
                body = await self._read_body(request, conn, request.content_length)
            except asyncio.TimeoutError:
                conn.force_close()  # the deadline passed mid-body: the answer has nowhere to go
                return web.Response(status=HTTPStatus.REQUEST_TIMEOUT)
            except RequestPayloadError as exc:  # the body ended early or broke its framing
                return self._answer(request, _plain(HTTPStatus.BAD_REQUEST, str(exc)), True)
            if body is None:
                exchange.body_problem = BodyProblem.BUSY
            else:
                exchange.body = body
        conn.begin()
        pool = self._admit(exchange)
        if pool is None:
            # That pool's queue is full: say so at once rather than let the queue (and the wait) grow.
            busy = _plain(HTTPStatus.SERVICE_UNAVAILABLE)
            return self._answer(request, Response(busy.status, busy.body, (*busy.headers, ("Retry-After", "1"))), True)
        try:
            await asyncio.get_running_loop().run_in_executor(self._pools[pool], self._call_route, exchange)
        finally:
            if pool in self._queue_free:
                self._queue_free[pool] += 1
        answer = exchange.response
        if isinstance(answer, StreamedResponse):
            return await self._stream(request, conn, answer, pool)
        if answer is None:
            answer = _plain(HTTPStatus.INTERNAL_SERVER_ERROR)
        return self._answer(request, answer, exchange.body_problem is not None)

    def _authenticated(self, exchange: Request) -> bool:
        try:
            return self._may_read_body is None or self._may_read_body(exchange)
        except Exception:
            log.exception("checking credentials before the body failed for %s", exchange.route)
            return False

    def _body_problem(self, request: web.BaseRequest) -> BodyProblem | None:
        if "Transfer-Encoding" in request.headers:
            return BodyProblem.LENGTH_REQUIRED  # chunked bodies are not taken: a length is known up front
        length = request.content_length
        if length is None:
            return BodyProblem.LENGTH_REQUIRED if request.method in _BODY_METHODS else None
        return BodyProblem.TOO_LARGE if length > self._max_body else None

    async def _read_body(self, request: web.BaseRequest, conn: _Connection, length: int) -> bytes | None:
        """The body, read under the request's deadline; None when the budget of bodies is spent."""
        if self._body_in_flight + length > BODY_BUDGET_BYTES:
            return None
        self._body_in_flight += length
        try:
            if request.headers.get("Expect", "").lower() == "100-continue":
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return await asyncio.wait_for(request.read(), conn.remaining())
        finally:
            self._body_in_flight -= length

    def _admit(self, exchange: Request) -> str | None:
        name = self._pool_of(exchange) if self._pool_of is not None else None
        name = name if name in self._pools else DEFAULT_POOL
        free = self._queue_free.get(name)
        if free is not None:
            if free <= 0:
                return None
            self._queue_free[name] = free - 1
        return name

    def _call_route(self, exchange: Request) -> None:
        try:
            self._route(exchange)
        except Exception as exc:
            # A 500 anyone may repeat at will: the first traceback of each route (of the first few), then one
            # line a minute with a count.
            self._route_failures += 1
            route = exchange.route[:100]
            if route not in self._traced and len(self._traced) < 64:
                self._traced.add(route)
                log.exception("handler failed for %s %s", exchange.command, route)
            else:
                message = "handler failed for %s %s: %r (%d failures so far)"
                self._ratelimited.log(logging.ERROR, "route-failure", message, exchange.command, route, exc,
                                      self._route_failures)  # fmt: skip
            exchange.response = None

    async def _write_while_taken(
        self, response: web.StreamResponse, chunk: bytes, transport: asyncio.BaseTransport | None
    ) -> None:
        """Write a chunk, waiting as long as the client keeps taking bytes: what it has not yet taken going
        down is progress, however long one write waits (a slow reader behind megabytes of kernel buffers
        waits for half of them to drain). The client is dropped only after write_timeout without progress."""
        loop = asyncio.get_running_loop()
        write = asyncio.ensure_future(response.write(chunk))
        last = unsent_bytes(transport)
        progressed = loop.time()
        try:
            while True:
                done, _ = await asyncio.wait({write}, timeout=min(1.0, self._write_timeout))
                if done:
                    write.result()
                    return
                now, unsent = loop.time(), unsent_bytes(transport)
                if unsent is not None and last is not None and unsent < last:
                    progressed = now
                last = unsent
                if now - progressed >= self._write_timeout:
                    raise asyncio.TimeoutError
        finally:
            if not write.done():
                write.cancel()

    def _headers(self, request: web.BaseRequest, fields: tuple[tuple[str, str], ...]) -> dict[str, str]:
        headers = {"Server": self._server_name, **dict(fields)}
        if request.version < (1, 1) and not request.keep_alive:
            headers["Connection"] = "close"  # HTTP/1.0 closes unless asked otherwise: say so
        return headers

    def _answer(self, request: web.BaseRequest, answer: Response, close: bool) -> web.Response:
        response = web.Response(status=answer.status, body=answer.body, headers=self._headers(request, answer.headers))
        if close:
            response.force_close()  # a refused body is left unread: this connection reads no next request
        return response

    async def _stream(
        self, request: web.BaseRequest, conn: _Connection, answer: StreamedResponse, pool: str
    ) -> web.StreamResponse:
        """Send a streamed answer: chunked for HTTP/1.1 (the connection may be kept alive), up to the close
        for HTTP/1.0. Each chunk is produced in `pool` once the previous one is in the socket's buffer."""
        loop = asyncio.get_running_loop()
        executor = self._pools[pool]
        response = web.StreamResponse(status=answer.status, headers=self._headers(request, answer.headers))
        progress = StreamProgress(pool, lambda: conn.writing_paused)
        self.streams.add(progress)
        try:
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            chunks = _iterate(answer.chunks)
            while True:
                try:
                    chunk = await loop.run_in_executor(executor, next, chunks, None)
                except Exception as exc:
                    # The head is out, so no 500 can follow: the client sees a body cut short, the log says why.
                    log.warning("streaming %s %s broke off: %s", request.method, request.path, exc,
                                exc_info=log.isEnabledFor(logging.DEBUG))  # fmt: skip
                    conn.force_close()
                    return response
                if chunk is None:
                    break
                if not chunk:
                    continue  # an empty chunk would end a chunked body
                progress.waiting_for_client = True
                try:
                    await self._write_while_taken(response, chunk, request.transport)
                finally:
                    progress.waiting_for_client = False
                progress.sent_bytes += len(chunk)
            await response.write_eof()
        except (ConnectionError, asyncio.TimeoutError) as exc:
            log.debug("stream to %s stopped: %s", conn.peer, exc or type(exc).__name__)
            conn.force_close()
        finally:
            self.streams.discard(progress)
            try:
                executor.submit(_close_chunks, answer.chunks)  # stops FFmpeg; never in the loop's thread
            except RuntimeError:  # the pools are shutting down: close it here, once
                _close_chunks(answer.chunks)
        return response


def unsent_bytes(transport: asyncio.BaseTransport | None) -> int | None:
    """What a connection has not yet got to its client: the transport's buffer and the kernel's send queue
    (bytes not yet acknowledged, SIOCOUTQ). None when it cannot be read."""
    if transport is None:
        return None
    sock = transport.get_extra_info("socket")
    try:
        queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        return int(queued) + transport.get_write_buffer_size()  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return None


def _plain(status: HTTPStatus, detail: str = "") -> Response:
    text = f"{status.phrase}: {detail}\n" if detail else f"{status.phrase}\n"
    return Response(status, text.encode(), (("Content-Type", "text/plain"),))


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
