"""The fast upstream HTTP/1.1 client: a raw ``asyncio.Protocol`` per connection, ``httptools``.

One token's way in: the kernel hands bytes to :meth:`_Conn.data_received`, ``httptools`` (llhttp)
strips the chunked framing and calls :meth:`_Conn.on_body` with the payload, which is appended to
the connection's pending list. Then either the stream's push path takes the whole read at once
(:attr:`_Conn.consumer`, set by :meth:`RawResponse.push_to`: :mod:`gateway.stream.push` decodes,
encodes and writes it to the client right there), or the reader is woken and
:meth:`RawResponse.read` returns everything pending as one ``bytes`` to
:class:`~gateway.stream.source.Source`. No per-chunk task, no intermediate stream reader.
docs/hot-path.md follows the token on to the client's socket.

:class:`gateway.rawclient.RawClient` is the pool (keep-alive, DNS cache, TLS, connection cap).

It covers what the gateway's upstreams need: HTTP/1.1, ``Content-Length``, chunked or
read-to-close bodies, interim (1xx) answers skipped, a capped head (and trailers), gzip and
deflate (a request asks for neither). A response's framing is trusted only when unambiguous (llhttp
refuses ``Content-Length`` with ``Transfer-Encoding``, two ``Content-Length``, a bad chunk size);
a transfer coding other than ``chunked`` is an error. A connection is pooled only in step with its
upstream: its response was whole, nothing followed it (a byte after the response's end, in the same
read or later, closes the connection, and never becomes part of this answer or the next one), and
the answer did not come before the request was fully written.

What it does not do (an HTTP proxy from the environment) is what ``server.upstream_client:
aiohttp`` is for (see docs/configuration.md); neither client follows redirects or speaks HTTP/2.
Errors are the gateway's own (:mod:`gateway.errors`) or ``OSError`` / ``TimeoutError``, which
:mod:`gateway.upstream` maps like the aiohttp client's.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Protocol, cast

from gateway.errors import (
    GatewayError,
    UpstreamError,
    UpstreamTruncated,
)
from gateway.idle import Expiry

try:
    import httptools
except ImportError:  # the ``fast`` extra is not installed: the aiohttp client serves
    httptools = None  # type: ignore[assignment]

AVAILABLE = httptools is not None
"""Whether the fast client can run here (``httptools`` is installed)."""

LINGER = 1.0
"""Seconds a finished stream's connection waits for the end of its HTTP response to be pooled."""
HIGH_WATER = 256 * 1024
"""Unread response bytes above which the connection stops reading (backpressure)."""
MAX_HEAD = 64 * 1024
"""Bytes a response head (with any interim heads before it) may take: past them the answer
is an error, as aiohttp's client caps its header lines, not a buffer that grows as sent."""
MAX_INFLATED = 16 * 1024 * 1024
"""Bytes one read of a coded body may inflate to (a read of 64 KiB that deflate packed at its
best ratio would be 64 MiB); past it the answer is refused, as a bomb or a broken stream."""
CODINGS = {b"gzip": 31, b"x-gzip": 31, b"deflate": zlib.MAX_WBITS}
"""The content codings decoded (zlib's window bits for each). A request asks for none
(``Accept-Encoding: identity``, :mod:`gateway.rawclient`); any other coding is an error."""


class _Stop(Exception):
    """Raised in a parser callback to stop ``httptools`` at once: the connection has already
    failed (:meth:`_Conn._refuse`), and no later byte of that read may be parsed."""


Key = tuple[str, str, int]


class Pool(Protocol):
    """What a connection tells its pool (:class:`gateway.rawclient.RawClient`)."""

    heads: Expiry[_Conn]
    """The response-head deadlines of the pool's connections (one loop timer for all)."""

    def release(self, conn: _Conn) -> None:
        """Keep ``conn`` for the next request to its upstream."""

    def forget(self, conn: _Conn) -> None:
        """``conn`` closed."""

    def done(self) -> None:
        """A request ended: free its connection slot."""


class _Conn(asyncio.Protocol):
    """One upstream connection and the response being read on it (one at a time)."""

    __slots__ = (
        "_decompress",
        "_head_size",
        "_interim",
        "_pool",
        "_size",
        "_until_close",
        "closed",
        "complete",
        "consumer",
        "error",
        "headers",
        "keep_alive",
        "key",
        "linger_timer",
        "loop",
        "parser",
        "paused",
        "pending",
        "status",
        "transport",
        "waiter",
    )

    def __init__(self, pool: Pool, key: Key, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.pending: list[bytes] = []
        self._size = 0
        self._head_size = 0
        self._decompress: zlib._Decompress | None = None
        self._until_close = False
        self._interim = False
        """An interim (1xx) answer's head was parsed and its message has not ended yet."""
        self.complete = False
        self.keep_alive = False
        self.closed = False
        self.paused = False
        self.error: BaseException | None = None
        self.consumer: Callable[[bytes], None] | None = None
        """While set (:meth:`RawResponse.push_to`), each read's body bytes go to it from
        :meth:`data_received` instead of waking the reader."""
        self.waiter: asyncio.Future[None] | None = None
        self.linger_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # bytes on an idle connection: it cannot be reused
            self.abort()
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("upstream switched protocols", retryable=True))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"upstream sent malformed HTTP: {exc}", retryable=True))
        consumer = self.consumer
        if consumer is not None and self.pending and self.error is None:
            consumer(self.take())  # the push path: gateway/stream/push.py
            return
        if not self.status:  # the head is still coming: its size is capped
            self._head_size += len(data)
            if self._head_size > MAX_HEAD:
                self._fail(UpstreamError(f"upstream sent a response head over {MAX_HEAD} bytes"))
            return
        if self._size > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.parser = None  # it holds our methods
        self._pool.forget(self)
        if self._until_close and exc is None:
            self.complete = True  # a body without length or chunks ends with the connection
        if not self.complete and self.error is None:
            self.error = exc or ConnectionResetError("upstream closed the connection")
        if self.linger_timer is not None:
            self._settle()
        self._wake()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the response's end: the upstream is out of step
            self._refuse(UpstreamError("upstream sent more than its response", retryable=True))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.status:  # a trailer (after a chunked body): capped as a head, then dropped
            self._head_size += len(name) + len(value)
            if self._head_size > MAX_HEAD:
                self._refuse(UpstreamError(f"upstream sent trailers over {MAX_HEAD} bytes"))
            return
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): not the response
            self.headers = []  # (RFC 9110 15.2); llhttp parses the next head as a new message,
            self._interim = True  # and a 101 makes feed_data raise HttpParserUpgrade
            return
        framed = status in (204, 304)
        for name, value in self.headers:
            if name == b"content-length":
                framed = True
            elif name == b"transfer-encoding":
                framed = True
                if value.strip().lower() != b"chunked":  # llhttp would pass it on still coded
                    coding_name = value.decode("latin-1")[:40]
                    self._refuse(UpstreamError(f"upstream sent transfer-encoding {coding_name!r}"))
            elif name == b"content-encoding":
                coding = value.strip().lower()
                bits = CODINGS.get(coding)
                if bits is not None:
                    self._decompress = zlib.decompressobj(bits)
                elif coding and coding != b"identity":
                    coding_name = coding.decode("latin-1")[:40]
                    self._refuse(UpstreamError(f"upstream sent content-encoding {coding_name!r}"))
        self._pool.heads.clear(self)
        self.status = status
        self._head_size = 0  # from here on, the trailers' count
        # llhttp forgets it at the end. An answer that came before the request was written
        # whole ends the connection: the upstream may read the rest as the next request.
        self.keep_alive = self.parser.should_keep_alive() and not (
            self.transport is not None and self.transport.get_write_buffer_size()
        )
        self._until_close = not framed
        if status < 300:
            self.headers = []  # only an error answer's headers are read (Retry-After)
        self._wake()

    def on_body(self, body: bytes) -> None:
        decompress = self._decompress
        if decompress is not None:  # a coded body (never asked for): inflated within a bound
            body = decompress.decompress(body, MAX_INFLATED)
            if decompress.unconsumed_tail:
                self._refuse(UpstreamError(f"upstream body inflates past {MAX_INFLATED} bytes"))
        self.pending.append(body)
        self._size += len(body)
        if self.consumer is None:  # else data_received hands the whole read over at once
            waiter = self.waiter  # ``_wake``, written out: once per chunk
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        if self.linger_timer is not None:
            self._settle()
        self._wake()

    # -- the reader side -------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.abort()
        self._wake()

    def _refuse(self, exc: BaseException) -> None:
        """:meth:`_fail` from a parser callback, and stop the parser (``data_received`` sees
        the stop as a parser error, after ``exc``): nothing after it is parsed."""
        self._fail(exc)
        raise _Stop

    async def wait(self) -> None:
        """Until something happened (headers, body, end, error)."""
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def take(self) -> bytes:
        """Everything read and not yet taken, as one ``bytes``."""
        pending = self.pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._size = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def start(self, request: bytes, deadline: float | None = None) -> None:
        """Send one request on this connection and start parsing its response; without its
        head by ``deadline`` (the loop's clock), the connection fails with ``TimeoutError``."""
        assert self.transport is not None
        if deadline is not None:
            self._pool.heads.set(self, deadline)  # cleared when the head comes
        self.parser = httptools.HttpResponseParser(self)
        self.consumer = None
        self.status = 0
        self.headers = []
        self._decompress = None
        self._until_close = False
        self._interim = False
        self._head_size = 0
        self.complete = False
        self.keep_alive = False
        self.error = None
        self.transport.write(request)

    def _head_late(self) -> None:
        self._fail(TimeoutError("upstream did not answer in time"))

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed

    def linger(self) -> None:
        """The reader is done: pool the connection when its response ends, within LINGER."""
        self.linger_timer = self.loop.call_later(LINGER, self._settle)

    def _settle(self) -> None:
        """End a lingering connection: pooled if its response ended, else closed."""
        timer, self.linger_timer = self.linger_timer, None
        if timer is None:
            return
        timer.cancel()
        self.pending.clear()
        if self.reusable:
            self._pool.release(self)
        else:
            self.abort()
        self._pool.done()

    def abort(self) -> None:
        """Drop the connection now (idempotent)."""
        transport = self.transport
        if transport is not None and not self.closed:
            self.closed = True
            transport.abort()
            self._pool.forget(self)


class RawResponse:
    """An upstream response (see :class:`gateway.upstream.UpstreamStream`)."""

    __slots__ = ("_conn", "_error", "_released", "status")

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self.status = conn.status
        self._error: GatewayError | None = None
        self._released = False

    def header(self, name: bytes) -> str | None:
        """The first response header called ``name`` (lower case), decoded as latin-1; kept
        for error answers only (status >= 300): a 2xx stream drops its headers."""
        for key, value in self._conn.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def read(self) -> bytes:
        """The next body bytes; ``b""`` at the end of the body."""
        conn = self._conn
        while True:
            if self._error is not None:
                raise self._error
            if conn.pending:
                return conn.take()
            if conn.complete:
                self.close()  # back to the pool: the response was read to its end
                return b""
            if conn.error is not None:
                error = conn.error
                if isinstance(error, GatewayError):
                    raise error
                raise UpstreamTruncated("the upstream connection broke mid-stream") from error
            await conn.wait()

    def ready(self) -> bool:
        """Body bytes were received and not yet read (:meth:`read` returns them at once)."""
        return self._error is None and bool(self._conn.pending)

    def interrupt(self, exc: GatewayError) -> None:
        self._error = exc
        self._conn._wake()

    # -- the push path (gateway/stream/push.py) -------------------------------------------

    def push_to(self, consumer: Callable[[bytes], None] | None) -> bool:
        """Hand each further read to ``consumer(body bytes)`` from ``data_received`` (None: stop).

        Refused (False) while anything is left for :meth:`read`: bytes already read, the end,
        an error, an interruption. While pushing, the reader is woken only for those (and by
        :meth:`wake`), so the caller waits with :meth:`wait` and then reads as usual.
        """
        conn = self._conn
        if consumer is not None and (
            conn.pending or conn.complete or conn.error is not None or self._error is not None
        ):
            return False
        conn.consumer = consumer
        return True

    async def wait(self) -> None:
        """Until the connection has something for :meth:`read` or :meth:`wake` is called."""
        await self._conn.wait()

    def wake(self) -> None:
        """End the current :meth:`wait`."""
        self._conn._wake()

    def finish(self) -> None:
        """The content ended: pool the connection once the rest of the response arrives (or
        :meth:`close` it at once when the response already ended or broke)."""
        conn = self._conn
        conn.consumer = None
        if self._released or conn.complete or conn.closed or conn.error or self._error:
            self.close()
            return
        self._released = True
        conn.linger()

    def close(self) -> None:
        """Release the connection: to the pool if the response was read whole, else closed."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        conn.consumer = None
        conn.pending.clear()
        if conn.reusable:
            conn._pool.release(conn)
        else:
            conn.abort()
        conn._pool.done()
