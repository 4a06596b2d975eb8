"""HTTP helpers shared by every handler and front door: request decoding, JSON responses.

The request side (:func:`check_content_type`, :func:`read_body`, :func:`decode_json`, or all
three as :func:`read_json`) raises the gateway's own errors; each front door shapes them in its
API's error format.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from multidict import CIMultiDictProxy, MultiMapping

from gateway.config.model import CorsConfig, RouteConfig, ServerConfig
from gateway.errors import (
    BodyTooLarge,
    GatewayError,
    InvalidJSON,
    InvalidRequest,
    UnsupportedMediaType,
)
from gateway.httpexchange import Reply, ServerRequest, ServerResponse
from gateway.jsonutil import dumps, loads


class RequestBody(Protocol):
    """A request body as it arrives: aiohttp's ``StreamReader`` or
    :class:`gateway.httpexchange.Body`."""

    total_bytes: int

    def is_eof(self) -> bool: ...

    def read_nowait(self, n: int = -1) -> bytes: ...

    def iter_chunked(self, n: int) -> AsyncIterator[bytes]: ...


class WriteState(Protocol):
    """The client connection's flow control, as the stream's direct writes check it."""

    @property
    def writing_paused(self) -> bool: ...


class ClientRequest(Protocol):
    """What the stream path reads of a client request, on either server: an
    ``aiohttp.web.Request`` or the fast server's :class:`gateway.httpexchange.ServerRequest`."""

    @property
    def app(self) -> web.Application: ...

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...

    @property
    def query(self) -> MultiMapping[str]: ...

    @property
    def content(self) -> RequestBody: ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def protocol(self) -> WriteState: ...


async def start_response(
    request: ClientRequest, headers: Mapping[str, str], own: Mapping[str, str] | None = None
) -> Reply:
    """Send a 200 response head for a streamed body on ``request``'s server; returns the
    response to write the body to (``write``, ``write_eof``). ``own``: this response's headers
    after ``headers`` (which may be a format's fixed, read-only ones: formatted once)."""
    if isinstance(request, ServerRequest):
        return request.respond(200, headers, own)
    assert isinstance(request, web.BaseRequest)
    response = web.StreamResponse(status=200, headers={**headers, **(own or {})})
    await response.prepare(request)
    return response


async def cut_response(request: ClientRequest, response: Reply, data: bytes) -> None:
    """Send ``data`` and end ``response`` without the body's end: the connection closes once
    the bytes are out, with no chunked terminator, so curl, ``fetch`` and every HTTP client
    report the body as cut short (a failed stream in a format with no error of its own)."""
    if isinstance(response, ServerResponse):
        response.cut(data)
        return
    if data:
        await response.write(data)
    transport = request.transport
    if transport is not None:
        transport.close()  # after the buffered bytes; aiohttp's own end then finds it closing


def on_aiohttp(
    handler: Callable[[ClientRequest], Awaitable[Reply]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler`` as aiohttp's router takes it."""

    async def serve(request: web.Request) -> web.StreamResponse:
        return aiohttp_reply(await handler(request))

    return serve


def aiohttp_reply(reply: Reply) -> web.StreamResponse:
    """A handler's reply on aiohttp's server, where it is always aiohttp's response (a
    :class:`ServerResponse` exists only on the fast server)."""
    assert isinstance(reply, web.StreamResponse)
    return reply


def direct_transport(request: ClientRequest, response: Reply) -> asyncio.Transport | None:
    """The transport a body frame may be written to straight, as one HTTP chunk, once the
    head is out; ``None`` when the body is not plain HTTP/1.1 chunks (HTTP/1.0, compressed)."""
    if isinstance(response, ServerResponse):
        return response.direct
    chunked = response.headers.get("Transfer-Encoding") == "chunked"
    return request.transport if chunked and not response.compression else None


def json_error(exc: GatewayError, extra_headers: dict[str, str] | None = None) -> web.Response:
    """The pre-stream error response: ``{"error": {"code", "message"}}`` with the error's status."""
    headers = {**(extra_headers or {}), **exc.headers}
    return web.Response(
        status=exc.http_status,
        body=dumps(exc.to_json()),
        content_type="application/json",
        headers=headers,
    )


def json_response(
    doc: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=dumps(doc), content_type="application/json", headers=headers
    )


async def read_body(request: ClientRequest, max_bytes: int, read_timeout: float) -> bytes:
    """Read the whole request body (bounded in size and time).

    Reading it all before opening the upstream matters: an unread body pauses socket reads and
    hides a client disconnect (lessons.md). Raises :class:`BodyTooLarge` past ``max_bytes``
    (checked against Content-Length first, then while reading) and :class:`InvalidRequest` when
    the body does not arrive within ``read_timeout`` (slowloris).
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise BodyTooLarge(f"request body is larger than {max_bytes} bytes")
    content = request.content
    if content.is_eof():  # the whole body came with the request head (the usual small POST):
        body = content.read_nowait()  # no timer, no async iteration
        if len(body) > max_bytes:
            raise BodyTooLarge(f"request body is larger than {max_bytes} bytes")
        return body
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(read_timeout):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge(f"request body is larger than {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise InvalidRequest(f"request body not received within {read_timeout:g}s") from None
    return b"".join(chunks)


def check_content_type(request: ClientRequest) -> None:
    """Raise :class:`UnsupportedMediaType` unless the body is declared ``application/json``."""
    ctype = request.headers.get("Content-Type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")


def decode_json(body: bytes) -> Any:
    """The JSON value of ``body``; raises :class:`InvalidJSON`."""
    try:
        return loads(body)
    except ValueError:
        raise InvalidJSON("request body is not valid JSON") from None


async def read_json(request: ClientRequest, server: ServerConfig) -> Any:
    """Check the content type, read the whole body (bounded) and decode it."""
    check_content_type(request)
    return decode_json(await read_body(request, server.max_body_bytes, server.request_read_timeout))


EXPOSED_HEADERS = "X-Request-Id, X-Resume, X-Token-Protocol, Retry-After, request-id"
"""The response headers a page on another origin may read (``Access-Control-Expose-Headers``):
the request id, a stream's resumability, the protocol version, and a 429's or 503's
``Retry-After`` (none of them is CORS-safelisted: unexposed, ``fetch`` shows them as null)."""

TRACE_HEADERS = ("traceparent", "tracestate")
"""Request headers every route's preflight allows beside ``cors.allow_headers``: the W3C trace
context the gateway continues upstream (contract section 14), which a page's tracing sends."""


def allowed_origin(cors: CorsConfig, origin: str | None) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for a request from ``origin`` (``None``: no
    ``Origin`` header, or not allowed). Configured origins are in the form browsers send
    (lower case, no default port: ``config/routes.py``), so the comparison is exact; ``*``
    allows any origin, ``null`` included, without credentials."""
    if origin is None:
        return None
    if "*" in cors.allow_origins:
        return "*"
    return origin if origin in cors.allow_origins else None


def cors_headers(request: ClientRequest, route: RouteConfig) -> dict[str, str]:
    """The CORS headers of every answer on ``route`` to ``request`` (errors included).

    None on a route without ``cors``. With ``allow_origins: ["*"]`` the answer is the same for
    every request: ``Access-Control-Allow-Origin: *``, also without an ``Origin`` (so a cache
    may share it). With a list it depends on the ``Origin``: ``Vary: Origin`` always, also
    when the origin is absent or refused (Fetch standard, "CORS protocol and HTTP caches": a
    cache must not hand one origin's answer to another), and the allow headers for a listed
    origin.
    """
    cors = route.cors
    if cors is None:
        return {}
    if "*" in cors.allow_origins:
        return {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        }
    origin = allowed_origin(cors, request.headers.get("Origin"))
    if origin is None:
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        "Vary": "Origin",
    }


def preflight(
    request: ClientRequest, route: RouteConfig, methods: str, headers: tuple[str, ...] = ()
) -> web.Response:
    """The answer to a CORS preflight (``OPTIONS``) on ``route``, which has ``cors``: ``204``
    allowing ``methods`` and the route's ``cors.allow_headers`` plus ``headers`` and
    :data:`TRACE_HEADERS`, or ``403`` without allow headers (the browser then never sends the
    request) when ``request`` has no ``Origin`` or one not allowed."""
    cors = route.cors
    if cors is None:
        return web.Response(status=403)
    allowed = cors_headers(request, route)
    if allowed_origin(cors, request.headers.get("Origin")) is None:
        return web.Response(status=403, headers={"Vary": "Origin"} if "Vary" in allowed else None)
    known = {h.lower() for h in cors.allow_headers}
    extra = (h for h in (*headers, *TRACE_HEADERS) if h.lower() not in known)
    names = [*cors.allow_headers, *dict.fromkeys(extra)]
    allowed.update(
        {
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": ", ".join(names),
            "Access-Control-Max-Age": str(int(cors.max_age)),
        }
    )
    return web.Response(status=204, headers=allowed)
