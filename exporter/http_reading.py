"""The reading side of the exporter transport's connections, in its I/O thread: the TLS handshake, and
reading a request completely (head and body, non-blocking, under one deadline from its first byte) before
a handler sees it, so that no client can make a handler thread wait. An oversized body is never read: the
request goes to its handler at once with the reason, and the connection closes after the answer."""

from __future__ import annotations

import logging
import selectors
import ssl
import time
from collections.abc import Callable
from http import HTTPStatus

from exporter.http_connections import RECV_SIZE, Connection, ConnectionTable, ConnState
from exporter.http_messages import MAX_HEAD_BYTES, BodyProblem, Refusal, parse_head

# The transport's log, whichever of its modules speaks: operators see one logger name, as before the split.
log = logging.getLogger("exporter.transport")


class RequestReader:
    """Reads requests on the connections of `table`; a complete one goes to `dispatch` (the request is in
    the connection's `request`), one that cannot be served to `refuse`."""

    def __init__(
        self,
        table: ConnectionTable,
        *,
        max_body_bytes: int,
        request_timeout: float,
        dispatch: Callable[[Connection], None],
        refuse: Callable[[Connection, HTTPStatus | int], None],
    ) -> None:
        self._table = table
        self._max_body = max_body_bytes
        self._request_timeout = request_timeout
        self._dispatch = dispatch
        self._refuse = refuse

    def handshake(self, conn: Connection) -> None:
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
        self.read(conn)  # the request may have come with the handshake's last flight

    def read(self, conn: Connection) -> None:
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
            self.parse(conn)

    def parse(self, conn: Connection) -> None:
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
