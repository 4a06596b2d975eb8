"""gateway/http.py: reading a request body, bounded in size and time, whichever way it arrives;
the CORS headers of a route's answers and preflights."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from gateway.config.model import CorsConfig, RouteConfig, Timeouts, UpstreamConfig, UpstreamTarget
from gateway.errors import BodyTooLarge, InvalidRequest
from gateway.http import cors_headers, preflight, read_body

MAX = 1000


async def handler(request: web.Request) -> web.Response:
    try:
        body = await read_body(request, MAX, read_timeout=0.3)
    except (BodyTooLarge, InvalidRequest) as exc:
        return web.Response(status=400, text=type(exc).__name__)
    return web.Response(body=body)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_post("/", handler)
    srv = TestServer(app)
    await srv.start_server()
    yield srv
    await srv.close()


async def exchange(
    server: TestServer, parts: list[bytes], gap: float = 0.0, until: bytes | None = None
) -> bytes:
    """Send ``parts`` on one connection (``gap`` seconds apart); the response, to its close or
    to ``until`` (a refused body is not read: the server would linger for it)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    for part in parts:
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(gap)
    async with asyncio.timeout(5):
        response = await (reader.readuntil(until) if until else reader.read())
    writer.close()
    return response


def head(length: int | None, chunked: bool = False) -> bytes:
    lines = [b"POST / HTTP/1.1", b"Host: x", b"Connection: close"]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def test_a_body_that_came_with_the_head(server: TestServer) -> None:
    body = b'{"messages": []}'
    response = await exchange(server, [head(len(body)) + body])
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"\r\n\r\n" + body)


async def test_a_body_that_comes_later_in_pieces(server: TestServer) -> None:
    body = b"x" * 600
    response = await exchange(server, [head(len(body)), body[:300], body[300:]], gap=0.05)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(body)


async def test_a_chunked_body_without_length(server: TestServer) -> None:
    chunks = [b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"]
    response = await exchange(server, [head(None, chunked=True), *chunks], gap=0.02)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"hello world")


@pytest.mark.parametrize("late", [False, True], ids=["with the head", "later"])
async def test_too_large_without_a_length_is_refused_either_way(
    server: TestServer, late: bool
) -> None:
    big = b"%x\r\n%s\r\n0\r\n\r\n" % (MAX + 1, b"y" * (MAX + 1))
    parts = [head(None, chunked=True), big] if late else [head(None, chunked=True) + big]
    response = await exchange(server, parts, gap=0.05)
    assert response.startswith(b"HTTP/1.1 400") and response.endswith(b"BodyTooLarge")


async def test_a_declared_length_over_the_bound_is_refused_before_reading(
    server: TestServer,
) -> None:
    response = await exchange(server, [head(MAX + 1)], until=b"BodyTooLarge")  # no body sent
    assert response.startswith(b"HTTP/1.1 400") and response.endswith(b"BodyTooLarge")


async def test_a_body_that_never_finishes_times_out(server: TestServer) -> None:
    response = await exchange(server, [head(100) + b"x" * 10], until=b"InvalidRequest")
    assert response.startswith(b"HTTP/1.1 400") and response.endswith(b"InvalidRequest")


# -- CORS (contract section 9; the Fetch standard's CORS protocol) -----------------------------

APP = "https://app.example"


def route(cors: CorsConfig | None) -> RouteConfig:
    target = UpstreamTarget("simulated", UpstreamConfig(), Timeouts(), {})
    return RouteConfig("r", "/v1/stream/r", "tokens", target, cors=cors)


LISTED = route(CorsConfig(allow_origins=(APP,)))
ANY = route(CorsConfig(allow_origins=("*",)))


def from_origin(origin: str | None, method: str = "POST", **headers: str) -> web.Request:
    if origin is not None:
        headers["Origin"] = origin
    return make_mocked_request(method, "/v1/stream/r", headers=headers)


def exposed(headers: Mapping[str, str]) -> set[str]:
    return {h.strip().lower() for h in headers["Access-Control-Expose-Headers"].split(",")}


def test_an_allowed_origin_may_read_the_headers_an_app_needs() -> None:
    """``Retry-After`` (a 429's, a 503's) and ``X-Resume`` are not CORS-safelisted: unexposed, a
    page reads them as null (the client's ``retryAfter`` was null on another origin)."""
    for route, value in ((LISTED, APP), (ANY, "*")):
        headers = cors_headers(from_origin(APP), route)
        assert headers["Access-Control-Allow-Origin"] == value
        assert {"x-request-id", "retry-after", "x-resume", "x-token-protocol"} <= exposed(headers)


@pytest.mark.parametrize(
    "origin",
    [None, "https://evil.example", "null", "https://APP.example", APP + "/", APP + ":443"],
    ids=["absent", "other", "null", "other case", "trailing slash", "default port"],
)
def test_an_answer_that_depends_on_the_origin_varies_on_it(origin: str | None) -> None:
    """A listed route's answer to any other ``Origin`` (browsers send the serialized form:
    lower case, no slash, no default port), or to none, carries no allow headers but
    ``Vary: Origin``: a cache must not give it to an allowed origin (it had no ``Vary``)."""
    assert cors_headers(from_origin(origin), LISTED) == {"Vary": "Origin"}
    refused = preflight(from_origin(origin, "OPTIONS"), LISTED, "POST")
    assert refused.status == 403
    assert dict(refused.headers).get("Vary") == "Origin"
    assert not any(k.lower().startswith("access-control-") for k in refused.headers)


@pytest.mark.parametrize("origin", [None, "null", "https://any.example"])
def test_a_wildcard_route_answers_every_request_alike(origin: str | None) -> None:
    """``*``: the same headers whatever the ``Origin`` (a sandboxed page's ``null`` included,
    which ``*`` lets read without credentials), so no ``Vary``."""
    headers = cors_headers(from_origin(origin), ANY)
    assert headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in headers


def test_no_cors_no_headers() -> None:
    assert cors_headers(from_origin(APP), route(None)) == {}


@pytest.mark.parametrize("cors_route", [LISTED, ANY], ids=["listed", "wildcard"])
def test_a_preflight_allows_the_trace_context(cors_route: RouteConfig) -> None:
    """A page's tracing sends ``traceparent``/``tracestate``, which the gateway continues
    (contract section 14): the preflight allowed only ``cors.allow_headers``, so the browser
    refused the whole request."""
    asked = "content-type, authorization, traceparent, tracestate"
    request = from_origin(APP, "OPTIONS", **{"Access-Control-Request-Headers": asked})
    answer = preflight(request, cors_route, "GET, DELETE, OPTIONS", ("last-event-id",))
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Methods"] == "GET, DELETE, OPTIONS"
    allowed = [h.strip() for h in answer.headers["Access-Control-Allow-Headers"].split(",")]
    assert allowed == [
        "content-type",
        "authorization",
        "x-api-key",
        "last-event-id",
        "traceparent",
        "tracestate",
    ]
    assert answer.headers["Access-Control-Max-Age"] == "600"
