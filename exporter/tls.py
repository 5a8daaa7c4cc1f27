"""TLS for the exporter's event loop with every handshake's crypto in a small bounded thread pool.

asyncio's own TLS (`create_server(ssl=...)`) runs each handshake's key exchange and certificate signature
on the event loop, so a flood of handshakes delays every scrape. Here the listener is plain TCP; each
connection's `TLSHandshake` protocol feeds what the client sends into an `ssl.MemoryBIO` and runs
`SSLObject.do_handshake()` in `HandshakePool` (OpenSSL releases the GIL there, so it runs beside the loop
on another core), writing what the outgoing BIO holds to the socket from the loop. Once the handshake is
done, a `TLSTransport` over the raw transport encrypts and decrypts on the loop (symmetric crypto: cheap)
and the application protocol (aiohttp's) gets it as its transport, as it would asyncio's.

No maintained library does this (aioopenssl wraps PyOpenSSL but still handshakes on the loop; uvloop's TLS
is asyncio's design in C), so it is written here over public APIs: ssl.MemoryBIO/SSLObject and the
transport/protocol interfaces. `loop.sendfile(fallback=True)` accepts only transports built on asyncio's
`_FlowControlMixin` marked `_sendfile_compatible`; those two names are the one concession to asyncio's
internals (asyncio's own transports use them the same way), so aiohttp's FileResponse works over this too.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from asyncio import constants as asyncio_constants
from asyncio import transports as asyncio_transports
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

# Threads doing handshakes: each takes a core while it signs, and the box has 4; the loop, the routes and the
# cameras' FFmpegs keep the rest.
HANDSHAKE_THREADS = 2
# Handshake steps ready to run but waiting for a thread. Beyond this the OLDEST waiting handshake is cut: the
# wait of every handshake that is served stays under HANDSHAKE_QUEUE / (handshakes per second), so under a
# flood the ones served still finish well within their client's timeout, instead of all of them queueing
# up to the deadline and timing out together (a queue that serves only the already-late serves nobody).
HANDSHAKE_QUEUE = 64
READ_BYTES = 64 << 10  # plaintext taken from the SSLObject per read


class HandshakePool:
    """At most `threads` handshake steps at once; at most `queue_limit` more waiting, the oldest cut beyond.
    Everything but the step itself runs on the loop's thread, so no locks."""

    def __init__(self, threads: int | None = None, queue_limit: int | None = None) -> None:
        self._threads = threads or HANDSHAKE_THREADS
        self._queue_limit = queue_limit or HANDSHAKE_QUEUE
        self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="exporter-tls")
        self._waiting: collections.deque[TLSHandshake] = collections.deque()
        self._running = 0
        self.completed = 0  # handshakes done
        self.failed = 0  # refused by TLS (a bad certificate, not TLS at all, ...)
        self.cut_queue_full = 0  # cut while waiting: the queue was full
        self.cut_deadline = 0  # cut at their deadline

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, handshake: TLSHandshake) -> None:
        if self._running < self._threads:
            self._start(handshake)
            return
        if len(self._waiting) >= self._queue_limit:
            oldest = self._waiting.popleft()
            self.cut_queue_full += 1
            oldest.cut("the handshake queue is full")
        self._waiting.append(handshake)

    def discard(self, handshake: TLSHandshake) -> None:
        try:
            self._waiting.remove(handshake)
        except ValueError:
            pass

    def _start(self, handshake: TLSHandshake) -> None:
        self._running += 1
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, handshake.step)
        except RuntimeError:  # shut down: the server is stopping
            self._running -= 1
            handshake.cut("the server is stopping")
            return
        future.add_done_callback(lambda f: self._finished(handshake, f))

    def _finished(self, handshake: TLSHandshake, future: asyncio.Future[Any]) -> None:
        self._running -= 1
        while self._waiting and self._running < self._threads:
            self._start(self._waiting.popleft())
        if future.cancelled():
            handshake.cut("the server is stopping")
        else:
            handshake.stepped(future.result())

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        while self._waiting:
            self._waiting.popleft().cut("the server is stopping")


_StepResult = tuple[bool, bytes, BaseException | None]


class TLSHandshake(asyncio.Protocol):
    """The raw TCP transport's protocol for its whole life: during the handshake it drives the SSLObject
    (the crypto in `pool`), afterwards it hands what the socket delivers to the TLSTransport.

    `admit` is asked at accept (False: the connection is closed at once), `release` told when the handshake
    ends either way, so the server can count connections in their handshake against its cap."""

    def __init__(
        self,
        app_protocol: asyncio.Protocol,
        context: Callable[[], ssl.SSLContext],
        pool: HandshakePool,
        *,
        timeout: float,
        admit: Callable[[TLSHandshake], bool] = lambda _: True,
        release: Callable[[TLSHandshake], None] = lambda _: None,
    ) -> None:
        self._app_protocol = app_protocol
        self._context = context
        self._pool = pool
        self._timeout = timeout
        self._admit = admit
        self._release = release
        self._loop = asyncio.get_running_loop()
        self.started_at = self._loop.time()
        self._raw: asyncio.Transport | None = None
        self._sslobj: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._deadline: asyncio.TimerHandle | None = None
        self._stepping = False  # a step is queued or running: the BIOs belong to it
        self._unfed: list[bytes] = []  # bytes that arrived while a step had the BIOs
        self._handshaking = False
        self._admitted = False
        self.transport: TLSTransport | None = None  # once the handshake is done

    # -- asyncio.Protocol on the raw transport ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        if not self._admit(self):
            transport.abort()
            return
        self._admitted = self._handshaking = True
        try:
            self._sslobj = self._context().wrap_bio(self._incoming, self._outgoing, server_side=True)
        except (ssl.SSLError, ValueError) as exc:
            log.warning("cannot start a TLS handshake: %s", exc)
            self._end_handshake()
            transport.abort()
            return
        self._deadline = self._loop.call_later(self._timeout, self._expire)

    def data_received(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport._feed(data)
        elif not self._handshaking:
            return
        elif self._stepping:
            self._unfed.append(data)
        else:
            self._incoming.write(data)
            self._schedule()

    def eof_received(self) -> bool | None:
        if self.transport is not None:
            return self.transport._eof()
        self.cut("the client closed during its handshake")
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.transport is not None:
            self.transport._lost(exc)
            return
        self._end_handshake()
        self._pool.discard(self)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport._pause_writing()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport._resume_writing()

    # -- the handshake ----------------------------------------------------------------------------

    @property
    def handshaking(self) -> bool:
        return self._handshaking

    def cut(self, why: str) -> None:
        """Close a connection whose handshake has not finished (at its deadline, to make room, at stop)."""
        if not self._handshaking:
            return
        log.debug("closing %s in its TLS handshake: %s", self._peer(), why)
        self._end_handshake()
        self._pool.discard(self)
        if self._raw is not None:
            self._raw.abort()

    def _peer(self) -> Any:
        return self._raw.get_extra_info("peername") if self._raw is not None else None

    def _expire(self) -> None:
        self._deadline = None
        if self._handshaking:
            self._pool.cut_deadline += 1
            self.cut(f"not done after {self._timeout:g} s")

    def _end_handshake(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._handshaking = False
        if self._admitted:
            self._admitted = False
            self._release(self)

    def _schedule(self) -> None:
        self._stepping = True
        assert self._raw is not None
        self._raw.pause_reading()  # what comes meanwhile waits in the kernel, not in memory here
        self._pool.submit(self)

    def step(self) -> _StepResult:
        """In a pool thread: as far as the handshake gets with what the client has sent so far."""
        assert self._sslobj is not None
        done, error = False, None
        try:
            self._sslobj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            pass
        except Exception as exc:  # a refused certificate, not TLS at all, an SNI callback that failed
            error = exc
        return done, self._outgoing.read(), error

    def stepped(self, result: _StepResult) -> None:
        """Back on the loop after a step."""
        self._stepping = False
        if not self._handshaking or self._raw is None:
            return  # cut while the step ran
        done, out, error = result
        if out:
            self._raw.write(out)
        if self._raw.is_closing():  # the write found the connection reset: its connection_lost is on its way
            self._end_handshake()
            return
        if error is not None:
            self._pool.failed += 1
            log.debug("TLS handshake with %s failed: %s", self._peer(), error)
            self._end_handshake()
            self._raw.close()  # after the alert the step wrote, if any
            return
        unfed, self._unfed = b"".join(self._unfed), []
        if done:
            self._pool.completed += 1
            self._wrap(unfed)
            return
        if unfed:
            self._incoming.write(unfed)
            self._schedule()
        else:
            self._raw.resume_reading()

    def _wrap(self, unfed: bytes) -> None:
        assert self._raw is not None and self._sslobj is not None
        self._end_handshake()
        transport = TLSTransport(
            self._loop, self._raw, self._sslobj, self._incoming, self._outgoing, self._app_protocol
        )
        self.transport = transport
        self._app_protocol.connection_made(transport)
        if not transport.is_closing():
            if not transport._reading_paused:
                self._raw.resume_reading()
            transport._feed(unfed)  # what came with the client's Finished (often its first request)


class TLSTransport(asyncio_transports._FlowControlMixin, asyncio.Transport):
    """The application's transport once the handshake is done: plaintext in and out, TLS records on `raw`.
    Flow control is the raw transport's (its buffer holds the records), forwarded both ways."""

    _sendfile_compatible = asyncio_constants._SendfileMode.FALLBACK

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        raw: asyncio.Transport,
        sslobj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        protocol: asyncio.BaseProtocol,
    ) -> None:
        super().__init__(None, loop)
        self._raw = raw
        self._sslobj = sslobj
        self._incoming = incoming
        self._outgoing = outgoing
        self._protocol = protocol
        self._closing = False
        self._reading_paused = False
        self._feeding = False
        self._protocol_paused = False

    # -- what the application sees ----------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":
            return self._sslobj.context
        if name == "ssl_object":
            return self._sslobj
        if name == "peercert":
            return self._sslobj.getpeercert()
        if name == "cipher":
            return self._sslobj.cipher()
        if name == "compression":
            return self._sslobj.compression()
        return self._raw.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing or self._raw.is_closing()

    def close(self) -> None:
        """close_notify, then the raw transport closes once its buffer is written."""
        if self._closing:
            return
        self._closing = True
        try:
            self._sslobj.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # the client's close_notify is not awaited (asyncio does not either)
        self._flush()
        self._raw.close()

    def abort(self) -> None:
        self._closing = True
        self._raw.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[self._sslobj.write(view) :]
        except ssl.SSLError as exc:
            self._fatal(exc)
            return
        self._flush()

    def can_write_eof(self) -> bool:
        return False  # TLS has no half-close

    def write_eof(self) -> None:
        raise NotImplementedError("TLS does not support half-closes")

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._raw.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def is_reading(self) -> bool:
        return not self._reading_paused and not self.is_closing()

    def pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._raw.resume_reading()
            self._loop.call_soon(self._feed, b"")  # plaintext that was decrypted but not yet handed on

    # -- what the raw transport delivers (TLSHandshake forwards it) -----------------------------------

    def _feed(self, data: bytes) -> None:
        if data:
            self._incoming.write(data)
        if self._feeding:
            return  # a data_received further up the stack reads the rest
        self._feeding = True
        try:
            while not self._closing and not self._reading_paused:
                try:
                    chunk = self._sslobj.read(READ_BYTES)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self._flush()
                    self._closed_by_peer()
                    return
                except ssl.SSLError as exc:
                    self._fatal(exc)
                    return
                if not chunk:
                    self._closed_by_peer()
                    return
                self._protocol.data_received(chunk)  # type: ignore[attr-defined]
        finally:
            self._feeding = False
        if not self._closing:
            self._flush()  # what reading produced: TLS 1.3 key updates, alerts

    def _closed_by_peer(self) -> None:
        """The client's close_notify: TLS has no half-close, so unless the protocol wants to answer, close."""
        keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        if not keep_open:
            self.close()

    def _eof(self) -> bool:
        """The TCP stream ended (with or without a close_notify)."""
        if self._closing:
            return False
        keep_open = bool(self._protocol.eof_received())  # type: ignore[attr-defined]
        if not keep_open:
            self._closing = True
        return keep_open

    def _lost(self, exc: BaseException | None) -> None:
        self._closing = True
        if self._protocol_paused:
            self._protocol_paused = False
        self._protocol.connection_lost(exc)

    def _pause_writing(self) -> None:
        if not self._protocol_paused:
            self._protocol_paused = True
            self._protocol.pause_writing()

    def _resume_writing(self) -> None:
        if self._protocol_paused:
            self._protocol_paused = False
            self._protocol.resume_writing()

    def _flush(self) -> None:
        records = self._outgoing.read()
        if records and not self._raw.is_closing():
            self._raw.write(records)

    def _fatal(self, exc: BaseException) -> None:
        log.debug("TLS connection with %s failed: %s", self._raw.get_extra_info("peername"), exc)
        self._flush()  # the alert, if any
        self.abort()

    def __repr__(self) -> str:
        return f"<TLSTransport {self._raw!r}>"
