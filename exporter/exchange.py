"""One request as the exporter's routes see it, and their answer, with no HTTP machinery: the routes run
in worker threads (exporter/web.py hands them a Request and sends what they answer with aiohttp), so
they can be called as plain functions in tests."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy


class BodyProblem(enum.Enum):
    """Why a request's body was not read: the route answers for it."""

    TOO_LARGE = "too_large"  # Content-Length over the limit (413)
    LENGTH_REQUIRED = "length_required"  # no Content-Length, or chunked (411)
    BUSY = "busy"  # too many bodies in flight at once (503)
    UNAUTHENTICATED = "unauthenticated"  # the credentials are not (yet) known good: no body budget spent (401)


def headers_of(fields: Iterable[tuple[str, str]] = ()) -> CIMultiDictProxy[str]:
    """Header fields looked up without regard to case, a repeated one giving its first value (as aiohttp's)."""
    return CIMultiDictProxy(CIMultiDict(fields))


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: bytes
    headers: tuple[tuple[str, str], ...]


Chunks = Iterable[bytes] | BinaryIO


@dataclass(frozen=True)
class StreamedResponse:
    """An answer whose body is produced while it is sent. `chunks` is an iterable of bytes or a readable
    binary file; if it has a close() it is called exactly once when the stream ends, however it ends (done,
    the client gone, HEAD, the server stopping): that is where a producer frees what it holds. An exception
    from the chunks cuts the answer short: the connection is closed without the last chunk, so the client
    sees an incomplete body rather than a complete-looking short one."""

    status: HTTPStatus
    chunks: Chunks
    headers: tuple[tuple[str, str], ...]


@dataclass
class Request:
    """One request, its body read (or `body_problem` saying why not); `path` and `command` are named as in
    http.server's handler. A route answers through respond() or respond_stream()."""

    command: str
    path: str  # the request target, query included
    request_version: str
    headers: Mapping[str, str]
    client_address: tuple[Any, ...]
    body: bytes = b""
    body_problem: BodyProblem | None = None
    response: Response | StreamedResponse | None = field(default=None, repr=False)

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
        Each chunk is produced in the route's pool, only once the client has taken the previous ones."""
        self.response = StreamedResponse(status, chunks, (("Content-Type", content_type), *(headers or {}).items()))
