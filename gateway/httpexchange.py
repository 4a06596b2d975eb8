"""One request and its answer on the fast HTTP/1.1 server (:mod:`gateway.httpserver`).

:class:`ServerRequest` is what the gateway's stream handlers read of a request (the part of
``aiohttp.web.Request`` that :class:`gateway.http.ClientRequest` names), :class:`Body` its body
as it arrives, :class:`ServerResponse` a streamed answer (the same ``write``/``write_eof`` as
aiohttp's ``StreamResponse``), :func:`head` the bytes of a response head, :func:`body_framing`
the header line that frames a request's body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDict, MultiDictProxy

if TYPE_CHECKING:
    from gateway.httpserver import Connection

_NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())

Reply: TypeAlias = "web.StreamResponse | ServerResponse"
"""What a stream handler returns on either server: the answer it streamed, or a document to send
(an ``aiohttp.web.Response``: an error, a buffered answer)."""


class Body:
    """A request body as it arrives (the part of aiohttp's ``StreamReader`` the gateway reads:
    :func:`gateway.http.read_body`)."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_eof",
        "_error",
        "_max",
        "_paused",
        "_waiter",
        "total_bytes",
    )

    def __init__(self, conn: Connection, max_bytes: int) -> None:
        self._conn = conn
        self._max = max_bytes
        self._chunks: list[bytes] = []
        self._eof = False
        self._error: Exception | None = None
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.total_bytes = 0

    def is_eof(self) -> bool:
        """Whether the whole body arrived (read or not: :meth:`read_nowait` takes the rest)."""
        return self._eof

    def read_nowait(self, n: int = -1) -> bytes:
        """Everything received and not yet read (``n`` is ignored: the body is small)."""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self._paused:
            self._paused = False
            self._conn.resume_reading()
        return data

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (each item: what arrived since the last one)."""
        while True:
            if self._chunks:
                yield self.read_nowait()
            elif self._eof:
                return
            elif self._error is not None:
                raise self._error
            else:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None

    # -- the connection's side -------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.total_bytes += len(data)
        if self.total_bytes > self._max:  # the reader raises BodyTooLarge; read no more
            self._paused = True
            self._conn.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, error: Exception) -> None:
        """The body broke off (malformed framing): its reader raises ``error``."""
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class ServerRequest:
    """One request to a stream route: what the gateway's handlers read of an
    ``aiohttp.web.Request`` (:class:`gateway.http.ClientRequest`), nothing more."""

    __slots__ = (
        "_query",
        "_query_string",
        "app",
        "content",
        "headers",
        "method",
        "path",
        "protocol",
    )

    def __init__(
        self,
        conn: Connection,
        path: str,
        query_string: str,
        headers: CIMultiDictProxy[str],
        content: Body,
    ) -> None:
        self.app = conn.listener.app
        self.method = "POST"
        self.path = path
        self._query_string = query_string
        self._query: MultiDictProxy[str] | None = None
        self.headers = headers
        self.content = content
        self.protocol = conn

    @property
    def query(self) -> MultiDictProxy[str]:
        query = self._query
        if query is None:
            if not self._query_string:
                query = self._query = _NO_QUERY  # read-only, so one serves every request
            else:
                pairs = parse_qsl(self._query_string, keep_blank_values=True)
                query = self._query = MultiDictProxy(MultiDict(pairs))
        return query

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def transport(self) -> asyncio.Transport | None:
        """The client connection's transport (``None`` once it closed)."""
        return self.protocol.transport

    def respond(
        self, status: int, headers: Mapping[str, str], own: Mapping[str, str] | None = None
    ) -> ServerResponse:
        """Start the answer: its head goes out with the first body write (one send, not two).
        ``own``: this answer's headers after ``headers`` (see :func:`head`)."""
        return ServerResponse(self.protocol, status, headers, own)


class ServerResponse:
    """A streamed answer: :meth:`write` sends HTTP chunks (or, to an HTTP/1.0 client, plain
    bytes until the connection closes). The head goes out with the first write, as aiohttp's
    does (one ``send`` fewer per stream). The same two coroutines as aiohttp's
    ``StreamResponse``, so :class:`gateway.stream.sinks.Sink` treats both alike."""

    __slots__ = ("_conn", "_head", "chunked", "ended")

    def __init__(
        self,
        conn: Connection,
        status: int,
        headers: Mapping[str, str],
        own: Mapping[str, str] | None = None,
    ) -> None:
        self._conn = conn
        self.chunked = conn.http11
        self.ended = False
        if not self.chunked:
            framing = "Connection: close"  # an HTTP/1.0 body ends with the connection
        elif conn.keep_alive:
            framing = "Transfer-Encoding: chunked"
        else:  # the client asked for close, or the connection cannot serve another request
            framing = "Transfer-Encoding: chunked\r\nConnection: close"
        self._head = head(status, headers, framing, own)
        """The head, until the first write takes it."""

    @property
    def direct(self) -> asyncio.Transport | None:
        """The transport a frame may be written to as one HTTP chunk, once the head is out
        (None before, or when the body is not chunked)."""
        return self._conn.transport if self.chunked and not self._head else None

    async def write(self, data: bytes) -> None:
        """Send ``data``; waits while the client's buffer is over its high-water mark.
        Raises ``ConnectionResetError`` once the client is gone."""
        if data or self._head:
            self._send(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked and data else data)
        if self._conn.writing_paused:
            await self._conn.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        """Send ``data`` and end the body (the last chunk and the terminator: one write)."""
        if self.ended:
            return
        self.ended = True
        if self.chunked:
            self._send(b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data) if data else b"0\r\n\r\n")
        else:
            self._send(data)
        if self._conn.writing_paused:
            await self._conn.drain()

    def cut(self, data: bytes = b"") -> None:
        """Send ``data`` and end the answer without the body's end: no chunked terminator, and
        the connection closes once the bytes are out, so no client takes the body for whole
        (a failed stream in a format with no error of its own: ``Encoder.cut_on_error``)."""
        if self.ended:
            return
        self.ended = True
        self._conn.keep_alive = False
        if data or self._head:
            self._send(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked and data else data)

    def _send(self, data: bytes) -> None:
        head = self._head
        if head:
            data = head + data
            self._head = b""
        self._conn.write(data)


def head(
    status: int, headers: Mapping[str, str], framing: str, own: Mapping[str, str] | None = None
) -> bytes:
    """A response head: the status line, ``headers``, ``own``, ``framing`` (a header line or
    two) and ``Date``. Read-only ``headers`` (``MappingProxyType``: a stream format's fixed
    ones, :func:`gateway.stream.sinks.fixed_headers`) are formatted once, not per answer."""
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    if isinstance(headers, MappingProxyType):
        lines.append(_fixed_lines(headers))
    else:
        lines.extend([f"{name}: {value}" for name, value in headers.items()])
    if own:
        lines.extend([f"{name}: {value}" for name, value in own.items()])
    lines.append(framing)
    lines.append(_date())
    return "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n"


_FIXED: dict[int, tuple[Mapping[str, str], str]] = {}
"""Read-only header mappings' lines, by id (the entry keeps the mapping, so its id too)."""


def _fixed_lines(headers: Mapping[str, str]) -> str:
    cached = _FIXED.get(id(headers))
    if cached is not None and cached[0] is headers:
        return cached[1]
    lines = "\r\n".join(f"{name}: {value}" for name, value in headers.items())
    if len(_FIXED) < 256:
        _FIXED[id(headers)] = (headers, lines)
    return lines


_REASONS: dict[int, str] = {}


def _reason(status: int) -> str:
    reason = _REASONS.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        _REASONS[status] = reason
    return reason


_date_second = 0
_date_line = ""


def _date() -> str:
    """The ``Date`` header line, formatted once a second."""
    global _date_second, _date_line
    second = int(time.time())
    if second != _date_second:
        _date_second = second
        _date_line = "Date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(second))
    return _date_line


def body_framing(headers: Mapping[str, str]) -> bytes:
    """The header line that frames a request's body (llhttp checked it), or ``b""`` when the
    request has none."""
    coding = headers.get("Transfer-Encoding")
    if coding is not None:
        return f"Transfer-Encoding: {coding}\r\n".encode("latin-1")
    length = headers.get("Content-Length")
    if length is None or not int(length):
        return b""
    return f"Content-Length: {length}\r\n".encode("latin-1")
