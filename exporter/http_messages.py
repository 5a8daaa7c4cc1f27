"""HTTP/1.1 messages as the exporter's transport sees them, with no connection state: a request's parsed
head (Headers, Request and why its body was not read), a handler's answer (Response, StreamedResponse),
parsing a request head and serialising an answer's head. The I/O around them is exporter/transport.py's."""

from __future__ import annotations

import email.utils
import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, BinaryIO
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 16 << 10
MAX_HEADER_FIELDS = 100  # as http.client allows
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class BodyProblem(enum.Enum):
    """Why a request's body was not read: the handler answers for it."""

    TOO_LARGE = "too_large"  # Content-Length over the limit (413)
    LENGTH_REQUIRED = "length_required"  # no Content-Length, or chunked (411)
    BUSY = "busy"  # too many bodies in flight at once (503)


class Headers(Mapping[str, str]):
    """A request's header fields, looked up without regard to case; a repeated field gives its first value
    (get_all gives every one). Parsed by hand: the email parser http.server uses costs more than the rest
    of a scrape's handling together."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in fields:
            self._values.setdefault(name.lower(), []).append(value)

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()][0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get_all(self, name: str) -> list[str]:
        return list(self._values.get(name.lower(), ()))

    @classmethod
    def parse(cls, block: bytes) -> Headers:
        """The header block after the request line; Refusal for what RFC 9112 says to reject."""
        fields = []
        for line in block.split(b"\r\n") if block else ():
            name, sep, value = line.partition(b":")
            # No name, whitespace before the colon, or an obsolete folded line (leading whitespace): 400.
            if not sep or not name or name != name.strip() or not _TOKEN.match(name.decode("latin-1")):
                raise Refusal(HTTPStatus.BAD_REQUEST)
            fields.append((name.decode("latin-1"), value.strip().decode("latin-1")))
            if len(fields) > MAX_HEADER_FIELDS:
                raise Refusal(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        return cls(fields)


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: bytes
    headers: tuple[tuple[str, str], ...]


Chunks = Iterable[bytes] | BinaryIO


@dataclass(frozen=True)
class StreamedResponse:
    """An answer whose body is produced while it is sent. `chunks` is an iterable of bytes or a readable
    binary file; if it has a close() the transport calls it exactly once when the stream ends, however it
    ends (done, the client gone, HEAD, the server stopping): that is where a producer frees what it holds.
    An exception from the chunks cuts the answer short: the connection is closed without the last chunk,
    so the client sees an incomplete body rather than a complete-looking short one."""

    status: HTTPStatus
    chunks: Chunks
    headers: tuple[tuple[str, str], ...]


@dataclass
class Request:
    """One parsed request; `path` and `command` are named as in http.server's handler."""

    command: str
    path: str  # the request target as sent, query included
    request_version: str
    headers: Headers
    client_address: tuple[Any, ...]
    declared_length: int | None = None
    body: bytes = b""
    body_problem: BodyProblem | None = None
    close_connection: bool = False
    response: Response | StreamedResponse | None = None

    @property
    def route(self) -> str:
        """The path without query string: what routing looks at."""
        return urlsplit(self.path).path

    def respond(
        self, status: HTTPStatus, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.response = Response(status, body, (("Content-Type", content_type), *(headers or {}).items()))

    def respond_stream(
        self, status: HTTPStatus, content_type: str, headers: Mapping[str, str] | None, chunks: Chunks
    ) -> None:
        """Answer with a body of unknown length, sent while `chunks` produces it (see StreamedResponse).
        The handler's thread produces the chunks after the handler returns: route such requests to a pool
        of their own so they cannot hold up scrapes."""
        self.response = StreamedResponse(status, chunks, (("Content-Type", content_type), *(headers or {}).items()))


Handler = Callable[[Request], None]


class Refusal(Exception):
    """A request the transport answers itself, with `status`, and closes: no handler could make sense of it."""

    def __init__(self, status: HTTPStatus | int) -> None:
        super().__init__(status)
        self.status = status


def parse_head(head: bytes, address: tuple[Any, ...], max_body_bytes: int) -> Request:
    """A request from its head (request line and header block, without the blank line); Refusal for what
    RFC 9112 says to reject. A body over `max_body_bytes`, or one of no stated length, is left unread."""
    line, _, rest = head.partition(b"\r\n")
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
        raise Refusal(HTTPStatus.BAD_REQUEST)
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise Refusal(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED if version.startswith("HTTP/") else 400)
    headers = Headers.parse(rest)
    request = Request(method, target, version, headers, address)
    connection = headers.get("Connection", "").lower()
    request.close_connection = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
    lengths = headers.get_all("Content-Length") or []
    if headers.get("Transfer-Encoding") is not None:
        request.body_problem = BodyProblem.LENGTH_REQUIRED
    elif len(set(lengths)) > 1 or any(not v.strip().isdigit() for v in lengths):
        raise Refusal(HTTPStatus.BAD_REQUEST)
    elif lengths:
        text = lengths[0].strip()
        # Compared as text first: a Content-Length of 10**30 never becomes a number to allocate for.
        request.declared_length = int(text) if len(text) <= 18 else max_body_bytes + 1
        if request.declared_length > max_body_bytes:
            request.body_problem = BodyProblem.TOO_LARGE
    elif method in ("POST", "PUT", "PATCH"):
        request.body_problem = BodyProblem.LENGTH_REQUIRED
    return request


def serialize(
    server_name: str,
    status: HTTPStatus,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    close: bool,
    head_only: bool,
    version: str = "HTTP/1.1",
    framing: str | None = None,
    streamed: bool = False,
) -> bytes:
    """An answer's bytes: its head (with `framing` for a streamed body, else its Content-Length), then its
    body unless `head_only`. `version` is the request's: an HTTP/1.0 client kept alive is told so."""
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Server: {server_name}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        *(f"{k}: {v}" for k, v in headers),
    ]
    if framing is not None:
        lines.append(framing)
    elif not streamed:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    elif version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return out if head_only else out + body
