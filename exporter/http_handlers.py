"""Where the exporter transport's handlers run, and how their answers come back: a few named thread pools
(the scrapers' default one, a slow one, and any a server asks for), optionally with a bounded queue, and
a queue of finished answers that the I/O thread of exporter/transport.py takes and sends.

Routes that may wait on something (the webhook waits for a retention pass) get a pool of their own so
they cannot take the scrapers' threads."""

from __future__ import annotations

import collections
import functools
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus

from exporter.http_connections import Connection
from exporter.http_messages import Handler, Request, Response, StreamedResponse, serialize
from exporter.http_stream import produce

# The transport's log, whichever of its modules speaks: operators see one logger name, as before the split.
log = logging.getLogger("exporter.transport")

HANDLER_THREADS = 4  # scrapes are CPU-bound under one GIL: more threads would only add switching
SLOW_HANDLER_THREADS = 2
DEFAULT_POOL, SLOW_POOL = "default", "slow"


class HandlerPools:
    """Runs `handler` for requests the I/O thread has read completely, in the pool each belongs to, and
    queues the serialised answers for the I/O thread, calling `wake` so that it looks."""

    def __init__(
        self,
        handler: Handler,
        *,
        server_name: str,
        wake: Callable[[], None],
        slow_routes: Collection[str] = (),
        pools: Mapping[str, int] | None = None,
        pool_of: Callable[[Request], str | None] | None = None,
        queue_limits: Mapping[str, int] | None = None,
    ) -> None:
        self._handler = handler
        self._server_name = server_name
        self._wake = wake
        self._slow_routes = frozenset(slow_routes)
        # Pools by name: `slow_routes` go to SLOW_POOL, `pool_of` may name any pool of `pools` (name -> threads)
        # for a request, everything else goes to DEFAULT_POOL, which is the scrapers'.
        self._pool_of = pool_of
        sizes = {DEFAULT_POOL: HANDLER_THREADS, SLOW_POOL: SLOW_HANDLER_THREADS, **(pools or {})}
        self._pools = {
            name: ThreadPoolExecutor(threads, thread_name_prefix=f"exporter-{name}") for name, threads in sizes.items()
        }
        # Pools whose requests (queued and running) are capped: beyond the cap a request is answered 503 by
        # the I/O thread at once. For work a client can ask for at will, such as bcrypt on new credentials.
        self._queue_slots = {name: threading.Semaphore(limit) for name, limit in (queue_limits or {}).items()}
        # Handed from handler threads to the I/O thread: (conn, answer, close); an answer of None means
        # "this connection's stream has something new" (its first bytes, more, or its end).
        self._done: collections.deque[tuple[Connection, bytes | None, bool]] = collections.deque()

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    # -- in the I/O thread --------------------------------------------------------------------------

    def admit(self, request: Request) -> str | None:
        """The pool that will run `request`, its place in that pool's queue taken; None if the queue is full."""
        name = SLOW_POOL if request.route in self._slow_routes else None
        if name is None and self._pool_of is not None:
            name = self._pool_of(request)
        name = name if name in self._pools else DEFAULT_POOL
        slots = self._queue_slots.get(name)
        if slots is not None and not slots.acquire(blocking=False):
            return None
        return name

    def submit(self, pool: str, conn: Connection, request: Request) -> bool:
        """Run an admitted request in `pool`; False (its place given back) if the pools are shutting down."""
        slots = self._queue_slots.get(pool)
        try:
            self._pools[pool].submit(self._run, conn, request, slots)
        except RuntimeError:
            if slots is not None:
                slots.release()
            return False
        return True

    def take_done(self) -> Iterator[tuple[Connection, bytes | None, bool]]:
        """The answers handed back since the last look: (conn, answer or None for stream news, close)."""
        while self._done:
            yield self._done.popleft()

    # -- in a handler thread -------------------------------------------------------------------------

    def _run(self, conn: Connection, request: Request, slots: threading.Semaphore | None = None) -> None:
        """Run the handler, serialise its answer, hand it to the I/O thread; then give back the request's
        place in its pool's bounded queue, if it has one."""
        try:
            self._answer(conn, request)
        finally:
            if slots is not None:
                slots.release()

    def _answer(self, conn: Connection, request: Request) -> None:
        try:
            self._handler(request)
        except Exception:
            log.exception("handler failed for %s %s", request.command, request.route)
            request.response = None
        response = request.response
        if isinstance(response, StreamedResponse):
            produce(conn, request, response, self._server_name, functools.partial(self._hand_back, conn))
            return
        if response is None:
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            response = Response(status, f"{status.phrase}\n".encode(), (("Content-Type", "text/plain"),))
        close = request.close_connection
        data = serialize(
            self._server_name,
            response.status,
            response.body,
            response.headers,
            close,
            request.command == "HEAD",
            request.request_version,
        )
        self._hand_back(conn, data, close)

    def _hand_back(self, conn: Connection, answer: bytes | None, close: bool) -> None:
        """Give the I/O thread an answer for `conn` (None: news of its stream)."""
        self._done.append((conn, answer, close))
        self._wake()
