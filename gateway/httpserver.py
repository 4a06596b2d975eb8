"""The fast HTTP/1.1 server for the stream requests: a raw ``asyncio.Protocol``, ``httptools``.

The twin of the upstream client (:mod:`gateway.rawhttp`): per request one
:class:`~gateway.httpexchange.ServerRequest`, one :class:`~gateway.httpexchange.ServerResponse`
and the handler's task, where aiohttp's server builds a handler task, a payload reader, request
and response objects with their multidicts, and a keep-alive timer per connection.

Every connection starts here; at each request boundary :meth:`Connection._begin` reads the
request line. A ``POST`` to a configured route or a streaming front door is served here; anything
else hands the connection and the bytes read so far to aiohttp's request handler for good
(``transport.set_protocol``). Kept from aiohttp's server: a client disconnect cancels the
handler at once (``handler_cancellation``), keep-alive with an idle timeout, ``Expect:
100-continue``, HTTP/1.0, flow control toward the client, bounded heads and bodies, lingering
after an early answer. A request sent before the previous answer ended is served after it; two
in one read (pipelining) get the first answered with ``Connection: close``, then a close. A
request asking to switch protocols (``Upgrade``) is served as HTTP/1.1, then closed. No TLS (a
proxy terminates it).

Refused with a JSON 400 and a close, as nginx refuses them (framing in doubt: RFC 9112 6.1,
6.3): what llhttp refuses (``Content-Length`` with ``Transfer-Encoding``, two lengths, obs-fold,
a space before a colon, a bare LF or CR, NUL or controls in a field); a ``Transfer-Encoding``
other than one ``chunked``, or on an HTTP/1.0 request; an HTTP version other than 1.0 and 1.1;
a request line without a version; a head over :data:`MAX_HEAD`. A chunked body's trailer fields
are read and dropped (never a header of this request or the next), within the same bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, cast

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import InvalidRequest
from gateway.httpexchange import Body, Reply, ServerRequest, ServerResponse, body_framing, head
from gateway.jsonutil import dumps

if TYPE_CHECKING:
    from gateway.httplistener import Listener

try:
    import httptools
except ImportError:  # the ``fast`` extra is not installed: aiohttp's server serves
    httptools = None  # type: ignore[assignment]

AVAILABLE = httptools is not None
"""Whether the fast server can run here (``httptools`` is installed)."""

MAX_REQUEST_LINE = 8192
"""Bytes of a request line read before it is handed to aiohttp undecided (which rejects it)."""
LINGERING_TIME = 1.0
"""Seconds the rest of an early-answered request is read and dropped before closing."""
MAX_FIELD = 8190
"""Longest header name or value (aiohttp's limit; past it: 400)."""
MAX_HEADERS = 128
"""Most header lines in one request (past it: 400)."""
MAX_HEAD = 64 * 1024
"""Bytes of a request head's header lines, and bytes read in a body without a byte of it (a
chunked body's trailers, a chunk's extensions), before the request is refused (400, then close).
Also counted per read until the head ends: httptools buffers a header line whole before its
callback sees it, and one endless line would otherwise grow it until the idle timeout."""
MAX_EARLY_BYTES = 64 * 1024
"""Bytes of a next request kept while the current answer is still going out; then reads pause."""

_log = logging.getLogger("gateway")


class Connection(asyncio.Protocol):
    """One client connection while the gateway's own server has it (see the module docs)."""

    __slots__ = (
        "_field_bytes",
        "_head",
        "_head_size",
        "_headers",
        "_lingering",
        "_pipelined",
        "_upgrade",
        "_url",
        "body",
        "drain_waiter",
        "http11",
        "keep_alive",
        "listener",
        "loop",
        "lost_at",
        "parser",
        "task",
        "transport",
        "writing_paused",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.loop = asyncio.get_running_loop()  # made by the loop's server: once, not per request
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = None
        self._head = b""
        self._head_size = 0
        """Bytes of this head so far; in the body: bytes read since its last byte (MAX_HEAD)."""
        self._field_bytes = 0
        """Bytes of this head's header lines (MAX_HEAD, for a head that ends in the read that
        passes it)."""
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._pipelined = False
        self._upgrade: bytes | None = None
        """While an ignored ``Upgrade`` request's body is still to be read: its framing header."""
        self._lingering = False
        self.body: Body | None = None
        self.task: asyncio.Task[None] | None = None
        self.http11 = True
        self.keep_alive = True
        self.writing_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.lost_at: float | None = None
        """When the client went away (``time.monotonic``): the start of an abort's cancel time."""

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.listener.connections.add(self)
        self._idle()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if self._lingering:
            return
        if parser is None:
            data = self._head + data if self._head else data
            if self.task is None:
                self._begin(data)
            else:  # the next request, sent before this answer's last bytes were handled
                self._head = data
                if len(data) > MAX_EARLY_BYTES:
                    self.pause_reading()
            return
        self._feed(parser, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_at = time.monotonic()
        self.listener.connections.discard(self)
        self.listener.idle.clear(self)
        self.transport = None
        task = self.task
        if task is not None and not task.done():
            task.cancel()  # the client went away: the stream closes its upstream now
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the client closed the connection"))

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Until the client's buffer is below its low-water mark again."""
        if not self.writing_paused:
            return
        self.drain_waiter = self.loop.create_future()
        try:
            await self.drain_waiter
        finally:
            self.drain_waiter = None

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    # -- a request boundary: ours or aiohttp's ---------------------------------------------

    def _begin(self, data: bytes) -> None:
        """The first bytes of a request: serve it here if it is a stream route's ``POST``."""
        if not data.startswith(b"POST /"):
            if len(data) < 6 and b"POST /".startswith(data):
                self._head = data  # wait for the rest of the method
                return
            self._hand_off(data)
            return
        end = data.find(b" ", 5)
        if end < 0:
            if b"\n" in data:  # a line without a version (HTTP/0.9): no POST in that
                self._bad_request("malformed HTTP request line")
            elif len(data) < MAX_REQUEST_LINE:
                self._head = data
            else:
                self._hand_off(data)
            return
        target = data[5:end]
        path = target.partition(b"?")[0]
        if b"%" in path or not self.listener.claims(path.decode("latin-1")):
            self._hand_off(data)
            return
        self._head = b""
        self._head_size = len(data)
        self.parser = parser = httptools.HttpRequestParser(self)
        try:  # :meth:`_feed`, written out: once per request
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._ignore_upgrade(data[upgrade.args[0] :])
        except httptools.HttpParserError as exc:
            self._bad_request(_reason(exc))
            return
        if self.body is None and self.parser is parser and len(data) > MAX_HEAD:
            self._bad_request(f"request head over {MAX_HEAD} bytes")

    def _feed(self, parser: httptools.HttpRequestParser, data: bytes) -> None:
        """Feed ``data`` to ``parser``: a request's bytes after its first read. Bytes that bring
        no body byte (the rest of a head, trailers) count toward :data:`MAX_HEAD`."""
        body = self.body
        received = -1 if body is None else body.total_bytes
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._ignore_upgrade(data[upgrade.args[0] :])
            return
        except httptools.HttpParserError as exc:
            self._bad_request(_reason(exc))
            return
        if self.parser is not parser:  # the request ended (or was refused)
            return
        if self.body is not body or (body is not None and body.total_bytes != received):
            self._head_size = 0  # the head ended, or body bytes came
            return
        self._head_size += len(data)
        if self._head_size > MAX_HEAD:
            what = "request head" if body is None else "request trailers"
            self._bad_request(f"{what} over {MAX_HEAD} bytes")

    def _ignore_upgrade(self, rest: bytes) -> None:
        """Serve a request that asked to switch protocols (``Upgrade: h2c`` from ``curl
        --http2``, a websocket) as plain HTTP/1.1, as RFC 9110 7.8 allows and aiohttp does.

        llhttp stops at the end of such a request's head and leaves its body unread, so a new
        parser reads the body on from ``rest``, after a head that gives it only the request's
        framing (its callbacks skip that head). The connection closes after the answer."""
        framing, self._upgrade = self._upgrade, None
        if not framing:  # no body: the request is whole
            self.on_message_complete()
            return
        self.parser = parser = httptools.HttpRequestParser(self)
        self._pipelined = True  # the head's callbacks: skipped
        try:
            parser.feed_data(b"POST / HTTP/1.1\r\n" + framing + b"\r\n")
        finally:
            self._pipelined = False
        self._feed(parser, rest)

    def _hand_off(self, data: bytes) -> None:
        """Give the connection to aiohttp's request handler, with the bytes read so far."""
        transport = self.transport
        if transport is None:
            return
        self.listener.idle.clear(self)
        self.listener.connections.discard(self)
        handler = self.listener.aiohttp_server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.writing_paused:
            handler.pause_writing()
        handler.data_received(data)
        self.transport = None

    # -- httptools callbacks ---------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_REQUEST_LINE:  # httptools: HttpParserCallbackError
            raise InvalidRequest(f"request target over {MAX_REQUEST_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._pipelined or self.body is not None:  # a pipelined request's, or a trailer
            return  # (after the body): dropped, never a header of this request or the next
        name_size = len(name)
        value_size = len(value)
        if name_size > MAX_FIELD or value_size > MAX_FIELD:
            raise InvalidRequest(f"request header field over {MAX_FIELD} bytes")
        headers = self._headers
        self._field_bytes += name_size + value_size + 4  # (": ", CRLF)
        if self._field_bytes > MAX_HEAD:
            raise InvalidRequest(f"request head over {MAX_HEAD} bytes")
        if len(headers) >= MAX_HEADERS:
            raise InvalidRequest(f"request with over {MAX_HEADERS} header fields")
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        if parser is None or self._pipelined:
            return
        self.listener.idle.clear(self)  # busy until the answer is out
        version = parser.get_http_version()
        self.http11 = version == "1.1"
        if not self.http11 and version != "1.0":  # (HTTP/2.0 in an HTTP/1 request line)
            raise InvalidRequest(f"HTTP/{version} is not supported")
        self.keep_alive = parser.should_keep_alive()
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in self._headers:
            headers.add(name.decode("latin-1"), value.decode("utf-8", "surrogateescape"))
        self._headers = []
        self._field_bytes = 0
        self._head_size = 0  # from here on, the count of bytes without a body byte
        if self.http11 and len(headers.getall("Host", ())) != 1:  # RFC 9112 3.2
            raise InvalidRequest("an HTTP/1.1 request needs exactly one Host")
        if "Transfer-Encoding" in headers:
            _check_transfer_coding(headers, self.http11)
        if parser.should_upgrade():  # its body is read after llhttp pauses (_ignore_upgrade)
            self.keep_alive = False
            self._upgrade = body_framing(headers)
        path, _, query = self._url.partition(b"?")
        self._url = b""
        max_body = self.listener.max_body_bytes()
        self.body = body = Body(self, max_body)
        request = ServerRequest(
            self, path.decode("latin-1"), query.decode("latin-1"), CIMultiDictProxy(headers), body
        )
        expect = headers.get("Expect")  # looked up once here, not tested per header
        if expect is not None and self.http11 and expect.lower() == "100-continue":
            length = request.content_length
            if length is None or length <= max_body:
                self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.task = self.loop.create_task(self._serve(request))

    def on_body(self, body: bytes) -> None:
        if self.body is not None and not self._pipelined:
            self.body.feed(body)

    def on_message_complete(self) -> None:
        if self._pipelined or self._upgrade is not None:  # (an upgrade's body is still to come)
            return
        if self.body is not None:
            self.body.feed_eof()
        self.parser = None  # later bytes wait in ``_head`` until this answer is out

    def on_message_begin(self) -> None:
        if self.task is not None:  # a second request in the same read as the first: its
            self._pipelined = True  # bytes are in the parser, not ours to replay; close after
            self.keep_alive = False  # (the answer says so: the client sends it again)

    # -- serving ---------------------------------------------------------------------------

    async def _serve(self, request: ServerRequest) -> None:
        try:
            reply = await self.listener.handler(request)
        except asyncio.CancelledError:
            self.task = None  # it keeps its CancelledError, whose frames hold this connection
            self.abort()
            raise
        except Exception:  # the handler guards its errors; this is a bug in that guard
            _log.exception("unhandled error serving %s", request.path)
            self.abort()
            return
        try:
            await self._finish(reply)
        except ConnectionResetError:
            self.abort()
            return
        self.task = None
        self.body = None
        if self.parser is not None:  # answered before the body arrived (413, 401, ...)
            self._linger()
            return
        if not (self.keep_alive and not self._pipelined):
            self.close()
            return
        self._idle()
        self.resume_reading()  # paused by a body over its bound or an early next request
        if self._head:  # the next request came while this answer went out
            data, self._head = self._head, b""
            self._begin(data)

    async def _finish(self, reply: Reply) -> None:
        if isinstance(reply, ServerResponse):
            if not reply.ended:
                await reply.write_eof()
            if not reply.chunked:
                self.keep_alive = False  # an HTTP/1.0 stream's body ends with the connection
            return
        if not isinstance(reply, web.Response) or reply.prepared:
            raise RuntimeError(f"a stream route returned {type(reply).__name__}")
        body = reply.body
        data = body if isinstance(body, bytes) else b""
        framing = f"Content-Length: {len(data)}"
        if not self.keep_alive:
            framing += "\r\nConnection: close"
        elif not self.http11:  # HTTP/1.0 closes unless told (as aiohttp says it)
            framing += "\r\nConnection: keep-alive"
        self.write(head(reply.status, reply.headers, framing) + data)

    def write(self, data: bytes) -> None:
        """Write ``data`` to the client; ``ConnectionResetError`` once it is gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        transport.write(data)

    def _bad_request(self, message: str | None = None) -> None:
        """A request refused (by the parser, or ``message``): a JSON 400 if nothing was
        answered yet, then a close after lingering (:meth:`_linger`).

        Once its head was read the handler answers: its body broke off, which its read raises
        (a JSON 400 too); or the bytes after a whole request were not HTTP, and the request is
        answered before the connection closes."""
        self.parser = None
        self.keep_alive = False
        if self.transport is None:
            return
        if self.task is not None:
            body = self.body
            if body is not None and not body.is_eof():
                body.fail(InvalidRequest(message or "malformed HTTP request body"))
            return
        error = InvalidRequest(message or "malformed HTTP request")
        data = dumps(error.to_json())
        framing = f"Content-Length: {len(data)}\r\nConnection: close"
        self.write(head(400, {"Content-Type": "application/json"}, framing) + data)
        self._linger()  # the rest of what it sent is dropped: a close now could reset the answer

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close after the buffered bytes are out."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now."""
        if self.transport is not None:
            self.transport.abort()

    def _linger(self) -> None:
        """After the last answer: end the sending side now (the client reads the answer and
        its end at once), and read and drop what the client still sends for
        :data:`LINGERING_TIME`, then close: closing with unread bytes would reset the
        connection and the client could lose the answer (as aiohttp's ``lingering_time``)."""
        self._lingering = True
        self.parser = None
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()  # after the buffered answer
        self.resume_reading()
        self.listener.idle.after(self, LINGERING_TIME)  # then closed as an idle one is

    def _idle(self) -> None:
        """Closed after ``keepalive_timeout`` unless a request's head completes first."""
        listener = self.listener
        listener.idle.after(self, listener.keepalive_timeout)


def _check_transfer_coding(headers: CIMultiDict[str], http11: bool) -> None:
    """Refuse a request body framed by anything but one ``Transfer-Encoding: chunked`` on
    HTTP/1.1 (llhttp takes ``identity, chunked``, two such lines, or one on HTTP/1.0, which
    nginx refuses and a proxy in front may read another way: RFC 9112 6.1, 6.3)."""
    codings = headers.getall("Transfer-Encoding")
    if not http11:
        raise InvalidRequest("Transfer-Encoding in an HTTP/1.0 request")
    if len(codings) != 1 or codings[0].strip().lower() != "chunked":
        raise InvalidRequest("Transfer-Encoding other than chunked is not supported")


def _reason(exc: Exception) -> str | None:
    """The message of a refusal raised by one of our parser callbacks (httptools keeps it as
    the context of its ``HttpParserCallbackError``); ``None`` for llhttp's own refusals."""
    cause = exc.__context__
    return cause.message if isinstance(cause, InvalidRequest) else None
