"""The only aiohttp client code: open an upstream stream and read its bytes.

:func:`open_upstream` sends an :class:`~gateway.adapters.base.UpstreamRequest` with the one shared
``ClientSession`` (or plays a :class:`~gateway.adapters.base.LocalScript`) and returns an
:class:`UpstreamStream` once the upstream answered 2xx. Every foreign exception is translated
here, once, into :mod:`gateway.errors` (:func:`map_client_errors`).

Cancellation is design: a cancelled caller closes the upstream connection (``close()`` in every
exit path), so a client abort reaches the provider at once. Timeouts before the response headers
(``connect``, ``first_event``) are enforced here; the silence deadlines while streaming
(``first_event`` for the first bytes, ``idle``, ``total``) are enforced by the stream's deadlines
(:mod:`gateway.stream.deadlines`), which interrupt a pending read with
:meth:`UpstreamStream.interrupt`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import aiohttp

from gateway.adapters.base import Adapter, LocalScript, UpstreamRequest
from gateway.config.model import Timeouts
from gateway.errors import (
    GatewayError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamTruncated,
)
from gateway.rawclient import RawClient
from gateway.rawhttp import RawResponse

MAX_ERROR_BODY = 64 * 1024
READ_CHUNK = 64 * 1024


class UpstreamStream(Protocol):
    """An upstream that answered 2xx. ``read()`` returns the next bytes, ``b""`` at EOF."""

    status: int

    async def read(self) -> bytes: ...

    def ready(self) -> bool:
        """Whether ``read()`` would return bytes at once, already received (False is always
        safe: an implementation that cannot tell cheaply says False)."""

    def interrupt(self, exc: GatewayError) -> None:
        """Make the pending (or next) ``read()`` raise ``exc`` (deadline watchdog)."""

    def close(self) -> None:
        """Close the upstream connection now (idempotent)."""

    def finish(self) -> None:
        """The stream's content ended: close, or keep the connection for reuse (idempotent)."""


def client_error(
    exc: BaseException, what: str = "upstream", *, mid_stream: bool = False
) -> GatewayError:
    """The gateway error for a foreign exception of the upstream client (the one mapping).

    ``mid_stream``: the response headers came before the failure, so a broken connection means
    the stream was cut (contract 5 rule 1: ``upstream_truncated``), not that it never connected.
    """
    if isinstance(exc, GatewayError):
        return exc
    if mid_stream and isinstance(
        exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, OSError)
    ):
        return UpstreamTruncated(f"the {what} connection broke mid-stream")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # a TimeoutError: checked first
        return UpstreamConnectError(f"could not connect to {what} in time")
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout(f"{what} did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"could not connect to {what}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError(f"{what} sent a broken body", retryable=True)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError)):
        return UpstreamConnectError(f"{what} closed the connection")
    return UpstreamError(f"{what} request failed: {type(exc).__name__}")


_FOREIGN = (aiohttp.ClientError, OSError, TimeoutError)
"""What the upstream client may raise besides the gateway's own errors and cancellation."""


@contextlib.contextmanager
def map_client_errors(what: str = "upstream") -> Iterator[None]:
    """Translate aiohttp and OS errors into the gateway's tree. CancelledError passes through."""
    try:
        yield
    except _FOREIGN as exc:
        raise client_error(exc, what) from exc


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in both forms (delta-seconds or an HTTP date), as seconds >= 0."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _HTTPStream:
    __slots__ = ("_content", "_resp", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self._content = resp.content
        self.status = resp.status

    async def read(self) -> bytes:
        # A plain try (no context manager per read: this is the hot path).
        try:
            return await self._content.readany()
        except _FOREIGN as exc:
            raise client_error(exc, mid_stream=True) from exc

    def ready(self) -> bool:
        return False  # aiohttp's reader keeps its buffer to itself

    def interrupt(self, exc: GatewayError) -> None:
        self._content.set_exception(exc)

    def close(self) -> None:
        self._resp.close()

    def finish(self) -> None:
        self._resp.close()


class _ScriptStream:
    """Plays a LocalScript: sleeps each chunk's delay, then returns its bytes."""

    __slots__ = ("_chunks", "_error", "_pos", "_waiter", "status")

    def __init__(self, script: LocalScript) -> None:
        self._chunks = script.chunks
        self._pos = 0
        self.status = script.status
        self._error: GatewayError | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def read(self) -> bytes:
        if self._error is not None:
            raise self._error
        if self._pos >= len(self._chunks):
            return b""
        delay, data = self._chunks[self._pos]
        if delay > 0:
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            handle = loop.call_later(delay, _wake, self._waiter)
            try:
                await self._waiter
            finally:
                handle.cancel()
                self._waiter = None
        if self._error is not None:
            raise self._error
        # Only now: a read cancelled during its delay (the client left, the stream detaches)
        # must not lose its chunk; the next read plays it.
        self._pos += 1
        return data

    def ready(self) -> bool:
        chunks, pos = self._chunks, self._pos
        return self._error is None and pos < len(chunks) and chunks[pos][0] <= 0

    def interrupt(self, exc: GatewayError) -> None:
        self._error = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        self._pos = len(self._chunks)

    def finish(self) -> None:
        self.close()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def open_upstream(
    session: aiohttp.ClientSession,
    adapter: Adapter,
    request: UpstreamRequest | LocalScript,
    timeouts: Timeouts,
    raw: RawClient | None = None,
) -> UpstreamStream:
    """Send ``request`` and wait for the upstream's answer (connect + headers).

    Returns a stream once the answer is 2xx. A non-2xx answer is read (at most 64 KiB) and
    raised as the adapter's :meth:`~Adapter.status_error`; a connect failure as
    :class:`UpstreamConnectError`; no headers within ``timeouts.first_event`` as
    :class:`UpstreamTimeout`. If the caller is cancelled meanwhile, the connection is closed.

    ``raw``: the fast client (:mod:`gateway.rawhttp`, ``server.upstream_client``) sends the
    request instead of the aiohttp ``session``; the same errors, the same stream interface.
    """
    if isinstance(request, LocalScript):
        return _ScriptStream(request)
    if raw is not None:
        return await _open_raw(raw, adapter, request, timeouts)
    client_timeout = aiohttp.ClientTimeout(
        total=None, connect=None, sock_connect=timeouts.connect, sock_read=None
    )
    resp: aiohttp.ClientResponse | None = None
    try:
        with map_client_errors():
            async with asyncio.timeout(timeouts.first_event):
                resp = await session.request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    data=request.body,
                    timeout=client_timeout,
                    allow_redirects=False,
                    auto_decompress=True,
                )
                if resp.status >= 300:
                    body = await resp.content.read(MAX_ERROR_BODY)
                    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
                    raise adapter.status_error(resp.status, body, retry_after)
    except BaseException:
        if resp is not None:
            resp.close()
        raise
    return _HTTPStream(resp)


async def _open_raw(
    raw: RawClient, adapter: Adapter, request: UpstreamRequest, timeouts: Timeouts
) -> RawResponse:
    """:func:`open_upstream` with the fast client. ``timeouts.first_event`` is a deadline the
    client keeps itself (the pool's head deadlines), not an ``asyncio.timeout``: a
    context manager, a task lookup and a timer per request on the hot path."""
    deadline = asyncio.get_running_loop().time() + timeouts.first_event
    stream: RawResponse | None = None
    try:  # a plain try, not map_client_errors: a context manager per request costs
        stream = await raw.request(
            request.method, request.url, request.headers, request.body, timeouts.connect, deadline
        )
        if stream.status >= 300:
            async with asyncio.timeout_at(deadline):
                body = await _error_body(stream, MAX_ERROR_BODY)
            retry_after = retry_after_seconds(stream.header(b"retry-after"))
            raise adapter.status_error(stream.status, body, retry_after)
    except BaseException as exc:
        if stream is not None:
            stream.close()
        if isinstance(exc, _FOREIGN):
            raise client_error(exc) from exc
        raise
    return stream


async def _error_body(stream: RawResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of an error answer's body, then the connection is closed."""
    parts: list[bytes] = []
    size = 0
    with contextlib.suppress(GatewayError):
        while size < limit and (chunk := await stream.read()):
            parts.append(chunk)
            size += len(chunk)
    stream.close()
    return b"".join(parts)[:limit]


async def iterate(stream: UpstreamStream) -> AsyncIterator[bytes]:
    """Convenience for tests and tools: the stream's chunks until EOF, closed at the end."""
    try:
        while chunk := await stream.read():
            yield chunk
    finally:
        stream.close()
