"""The only aiohttp client code: open an upstream stream and read its bytes.

:func:`open_upstream` sends an :class:`~gateway.adapters.base.UpstreamRequest` with the one shared
``ClientSession`` (or plays a :class:`~gateway.adapters.base.LocalScript`) and returns an
:class:`UpstreamStream` once the upstream answered 2xx. Every foreign exception is translated
here, once, into :mod:`gateway.errors` (:func:`client_error`).

Both clients behave alike (``tests/test_upstream.py`` runs each scenario over both): the request
asks for no content coding, an error answer's body is read to its end (within ``first_event``),
a connect failure says why without the upstream's address, a content coding the client cannot
decode is an error before the stream, and a finished stream's connection waits
:data:`~gateway.rawhttp.LINGER` for the end of its HTTP body to be reused. What only the aiohttp
client does: the HTTP proxy the environment names (:func:`env_proxy`).

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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Protocol

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from multidict import CIMultiDict
from yarl import URL

from gateway.adapters.base import Adapter, LocalScript, UpstreamRequest
from gateway.config.model import Timeouts
from gateway.errors import (
    GatewayError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamTruncated,
)
from gateway.rawclient import RawClient, connect_reason
from gateway.rawhttp import LINGER, RawResponse

MAX_ERROR_BODY = 64 * 1024
READ_CHUNK = 64 * 1024
CODINGS = frozenset({"", "identity", "gzip", "deflate", "br", "zstd"})
"""The content codings the aiohttp client decodes (``br`` and ``zstd`` only with their optional
packages: without them aiohttp refuses the answer's head). Any other coding would reach the
framing decoder still encoded: it is an error before the stream, as on the raw client."""
MAX_PROXY_ORIGINS = 256
"""Origins whose environment proxy is remembered (:func:`env_proxy`); past it, forgotten."""


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
        return UpstreamConnectError(f"could not connect to {what}: {_connect_failure(exc)}")
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy refused the tunnel
        return UpstreamConnectError(f"the HTTP proxy refused the {what} connection ({exc.status})")
    if isinstance(exc, aiohttp.ClientResponseError):  # the answer's head did not parse
        return UpstreamError(f"{what} sent an answer that could not be read", retryable=True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError(f"{what} sent a broken body", retryable=True)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError)):
        return UpstreamConnectError(f"{what} closed the connection")
    return UpstreamError(f"{what} request failed: {type(exc).__name__}")


def _connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    """Why a connection failed, as the raw client says it (``rawclient.connect_reason``): never the
    address or host name that aiohttp's own message carries (clients see this message)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "its host name did not resolve"
    return connect_reason(
        exc
    )  # aiohttp's TLS errors are the ssl module's, its others carry the errno


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
    """An aiohttp response as an :class:`UpstreamStream`. Its connection goes back to the
    session's pool when aiohttp reads the end of the body (aiohttp releases it there by
    itself); :meth:`finish` waits :data:`~gateway.rawhttp.LINGER` for that end, as the raw
    client does, :meth:`close` (or the end not coming in time) closes the connection."""

    __slots__ = ("_content", "_linger", "_resp", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self._content = resp.content
        self._linger: asyncio.TimerHandle | None = None
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
        if self._linger is None:  # after finish(), the linger decides
            self._resp.close()

    def finish(self) -> None:
        resp = self._resp
        if self._linger is not None or resp.connection is None:  # released at the body's end
            return
        # Content ended before the HTTP body did (the terminator chunk comes in its own
        # write): closing now would cost the next request a new connection (and TLS).
        self._linger = asyncio.get_running_loop().call_later(LINGER, resp.close)


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
    :class:`UpstreamTimeout`; an error answer's body counts in the same ``first_event`` (past
    it, the error is the answer's status with what of its body came). If the caller is
    cancelled meanwhile, the connection is closed.

    ``raw``: the fast client (:mod:`gateway.rawhttp`, ``server.upstream_client``) sends the
    request instead of the aiohttp ``session``; the same errors, the same stream interface.
    """
    if isinstance(request, LocalScript):
        return _ScriptStream(request)
    if raw is not None:
        return await _open_raw(raw, adapter, request, timeouts)
    return await _open_aiohttp(session, adapter, request, timeouts)


async def _open_aiohttp(
    session: aiohttp.ClientSession, adapter: Adapter, request: UpstreamRequest, timeouts: Timeouts
) -> UpstreamStream:
    """:func:`open_upstream` with the aiohttp client: the same request (``Accept-Encoding:
    identity`` unless the adapter asks otherwise, as the raw client sends), the same errors,
    and the HTTP proxy the environment names (:func:`env_proxy`), which the raw client ignores."""
    client_timeout = aiohttp.ClientTimeout(
        total=None, connect=None, sock_connect=timeouts.connect, sock_read=None
    )
    headers = CIMultiDict(request.headers)
    headers.setdefault("Accept-Encoding", "identity")  # a token's bytes as sent, not zlib's batch
    proxy, proxy_auth = env_proxy(request.url)
    deadline = asyncio.get_running_loop().time() + timeouts.first_event
    resp: aiohttp.ClientResponse | None = None
    try:
        try:
            async with asyncio.timeout_at(deadline):
                resp = await session.request(
                    request.method,
                    request.url,
                    headers=headers,
                    data=request.body,
                    timeout=client_timeout,
                    allow_redirects=False,
                    auto_decompress=True,
                    proxy=proxy,
                    proxy_auth=proxy_auth,
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamConnectError(
                f"could not connect to upstream in {timeouts.connect:g}s"
            ) from exc
        except _FOREIGN as exc:
            raise client_error(exc) from exc
        if resp.status >= 300:
            body = await _read_body(resp.content.readany, MAX_ERROR_BODY, deadline)
            retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
            raise adapter.status_error(resp.status, body, retry_after)
        coding = resp.headers.get("Content-Encoding", "").strip().lower()
        if coding not in CODINGS:
            raise UpstreamError(f"upstream sent content-encoding {coding[:40]!r}")
    except BaseException:
        if resp is not None:
            resp.close()
        raise
    return _HTTPStream(resp)


_PROXIES: dict[str, tuple[URL | None, aiohttp.BasicAuth | None]] = {}


def env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The HTTP proxy (and its credentials) the environment names for ``url``: ``HTTP_PROXY`` /
    ``HTTPS_PROXY`` by scheme, none for a host ``NO_PROXY`` lists (``aiohttp``'s ``trust_env``
    rules, without its ``.netrc`` credentials for the upstream itself). Looked up once per
    origin: the environment is the process's, read at its first request to that origin."""
    scheme, _, rest = url.partition("://")
    origin = f"{scheme}://{rest.split('/', 1)[0]}"
    found = _PROXIES.get(origin)
    if found is None:
        try:
            found = get_env_proxy_for_url(URL(origin))
        except (LookupError, ValueError):
            found = (None, None)
        if len(_PROXIES) >= MAX_PROXY_ORIGINS:
            _PROXIES.clear()
        _PROXIES[origin] = found
    return found


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
            body = await _error_body(stream, MAX_ERROR_BODY, deadline)
            retry_after = retry_after_seconds(stream.header(b"retry-after"))
            raise adapter.status_error(stream.status, body, retry_after)
    except BaseException as exc:
        if stream is not None:
            stream.close()
        if isinstance(exc, _FOREIGN):
            raise client_error(exc) from exc
        raise
    return stream


async def _error_body(stream: RawResponse, limit: int, deadline: float | None = None) -> bytes:
    """At most ``limit`` bytes of an error answer's body (:func:`_read_body`), then the
    connection is closed (or pooled, when the body was read to its end)."""
    body = await _read_body(stream.read, limit, deadline)
    stream.close()
    return body


async def _read_body(
    read: Callable[[], Awaitable[bytes]], limit: int, deadline: float | None
) -> bytes:
    """At most ``limit`` bytes of an error answer's body, read until its end or ``deadline``
    (the loop's clock; ``None``: no bound). A body cut short or late gives what came: the
    answer's status is the error, its body only says more about it (both clients read it
    alike: to its end, not only the first read)."""
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            while size < limit and (chunk := await read()):
                parts.append(chunk)
                size += len(chunk)
    except (GatewayError, aiohttp.ClientError, OSError, TimeoutError):
        pass
    return b"".join(parts)[:limit]


async def iterate(stream: UpstreamStream) -> AsyncIterator[bytes]:
    """Convenience for tests and tools: the stream's chunks until EOF, closed at the end."""
    try:
        while chunk := await stream.read():
            yield chunk
    finally:
        stream.close()
