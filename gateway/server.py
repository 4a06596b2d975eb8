"""The aiohttp application: the app factory and the gateway's own handlers.

``build_app(config)`` is shared by the runner (``runner.py``, the production way) and the tests.
The stream ``POST`` requests reach :func:`handle_route` on the fast server
(``gateway/httpserver.py``, :func:`stream_listener`) or the same handlers through aiohttp's router.

Endpoints: one ``POST`` per configured route; ``GET /metrics``, ``/healthz``, ``/readyz``;
``GET /`` (playground), ``/static/...``, ``GET /v1/routes`` (route list for the playground, no
secrets). Any error before the first stream byte is a JSON body with the right status, never
HTML or a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.config.model import GatewayConfig
from gateway.encoders import ENCODERS
from gateway.errors import (
    BodyTooLarge,
    GatewayError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
)
from gateway.features import install_features
from gateway.frontdoor import STREAM_ENDPOINTS, install_frontdoor
from gateway.frontdoor.ui_messages import from_ui_messages
from gateway.http import (
    ClientRequest,
    aiohttp_reply,
    json_error,
    json_response,
    preflight,
    read_json,
)
from gateway.httpexchange import Reply, ServerRequest
from gateway.httplistener import Listener
from gateway.metrics import Metrics
from gateway.rawclient import RawClient
from gateway.request import ChatRequest, parse_request
from gateway.resume.wiring import handle_resume, install_resume
from gateway.state import (
    RAW_CLIENT,
    SESSION,
    STATE,
    RouteRuntime,
    StateHolder,
    bind_clients,
    build_state,
)
from gateway.stream import StreamPlan, start_stream
from gateway.stream.plan import build_attempts
from gateway.tracing.app import install_tracing

STATIC_DIR = Path(__file__).resolve().parent / "static"


def _pick_encoder(request: ClientRequest, runtime: RouteRuntime) -> str:
    fmt = request.query.get("format") or runtime.config.format
    if fmt not in ENCODERS:
        raise InvalidRequest(f"format: unknown format (known: {', '.join(ENCODERS)})")
    return fmt


async def handle_stream(request: ClientRequest) -> Reply:
    """``POST <route path>``: validate, then stream (contract sections 3, 5, 6)."""
    received = time.monotonic()
    state = request.app[STATE].current
    runtime = state.routes_by_path.get(request.path)
    if runtime is None:  # a reload removed the route
        return json_error(NotFound(f"no route at {request.path}"))
    route = runtime.config

    async def prepare(request_id: str) -> StreamPlan:
        body = await read_json(request, state.config.server)
        fmt = _pick_encoder(request, runtime)
        chat: ChatRequest | None = None
        if route.request == "native":
            if not isinstance(body, dict):
                raise InvalidRequest("body: must be a JSON object")
        else:
            # useChat's DefaultChatTransport sends UIMessages (``parts``); others pass unchanged.
            body = from_ui_messages(body)
            chat = parse_request(body)
            if chat.model is not None and not route.allow_model_override:
                raise InvalidRequest("model: this route does not allow choosing the model")
        attempts = build_attempts(runtime, chat, body)
        model = chat.model if chat is not None else None
        max_tokens = chat.max_tokens if chat is not None else None
        encoder = ENCODERS[fmt](route, request_id)
        return StreamPlan(encoder, attempts, model, max_tokens, chat)

    return await start_stream(request, state, runtime, prepare, received=received)


async def handle_preflight(request: web.Request) -> web.StreamResponse:
    """``OPTIONS <route path>``: CORS preflight for routes with ``cors.allow_origins``."""
    state = request.app[STATE].current
    runtime = state.routes_by_path.get(request.path)
    if runtime is None or runtime.config.cors is None:
        return json_error(MethodNotAllowed("use POST"), {"Allow": "POST"})
    return preflight(request, runtime.config, "POST")


async def handle_wrong_method(request: web.Request) -> web.StreamResponse:
    return json_error(
        MethodNotAllowed(f"{request.method} is not allowed here; use POST"), {"Allow": "POST"}
    )


# -- operations endpoints ----------------------------------------------------------------------


async def handle_metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[STATE].current.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def handle_healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def handle_readyz(request: web.Request) -> web.Response:
    state = request.app[STATE].current
    if state.draining:
        return json_response({"status": "draining"}, status=503)
    return json_response({"status": "ready", "streams": len(state.sessions)})


async def handle_routes(request: web.Request) -> web.Response:
    """Route names, paths, providers and formats for the playground; never upstream details."""
    state = request.app[STATE].current
    routes = [
        {
            "name": r.config.name,
            "path": r.config.path,
            "provider": r.config.provider,
            "format": r.config.format,
            **({"resume": True} if r.config.resume.enabled else {}),
        }
        for r in state.routes.values()
    ]
    return json_response({"routes": routes})


async def handle_index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


# -- app factory -------------------------------------------------------------------------------


def guard(exc: Exception, path: str) -> web.Response:
    """The JSON answer for an error that escaped a handler (before the stream started)."""
    if isinstance(exc, GatewayError):
        return json_error(exc)
    logging.getLogger("gateway").exception("unhandled error in %s", path)
    return json_error(InternalError("internal error"))


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error before a stream starts becomes JSON; no HTML pages, no tracebacks."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return json_error(NotFound(f"no route at {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        allow = ", ".join(sorted(exc.allowed_methods))
        return json_error(
            MethodNotAllowed(f"{request.method} is not allowed here"), {"Allow": allow}
        )
    except web.HTTPRequestEntityTooLarge:
        return json_error(BodyTooLarge("request body is too large"))
    except web.HTTPException as exc:
        if exc.status >= 400:
            code = "invalid_request" if exc.status < 500 else "internal"
            doc = {"error": {"code": code, "message": exc.reason}}
            return json_response(doc, status=exc.status)
        raise
    except Exception as exc:  # GatewayError, or a bug: never a traceback to the client
        return guard(exc, request.path)


async def close_after_chunked_body(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Close a connection whose request came with a chunked body once it is answered.

    aiohttp's C parser (3.14) keeps the last trailer field of a chunked body as a header of the
    next request on the connection: a trailer ``Authorization`` would authorize it, and behind a
    proxy that shares connections that request may be another client's. The gateway's own
    server drops trailers; on aiohttp's the next request gets a connection of its own. Clients
    send a ``Content-Length`` body nearly always, so this costs a reconnect rarely.
    """
    if "Transfer-Encoding" in request.headers:
        response.force_close()


async def _client_session_ctx(app: web.Application) -> AsyncIterator[None]:
    """One shared ClientSession for every upstream call, closed at shutdown."""
    server = app[STATE].current.config.server
    connector = aiohttp.TCPConnector(
        limit=server.upstream_max_connections,  # 0: no cap, as on the raw client
        ttl_dns_cache=300,
        enable_cleanup_closed=True,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=True,
        # No cookies: one upstream's Set-Cookie for one route's (one tenant's) request must
        # never ride on another's (the raw client keeps none either).
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    app[SESSION] = session
    raw = RawClient(max_connections=server.upstream_max_connections)
    app[RAW_CLIENT] = raw
    bind_clients(app, app[STATE].current)
    yield
    await raw.close()
    await session.close()


async def _metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """The streams' pending metric updates reach the series before the process ends (the last
    context torn down: drains and pools may still count on the way out)."""
    yield
    app[STATE].current.metrics.flush()


async def _pools_ctx(app: web.Application) -> AsyncIterator[None]:
    """Close the upstream pools' stores at shutdown (a reload carries them over instead)."""
    yield
    for pool in app[STATE].current.pools.values():
        await pool.close()


def build_app(config: GatewayConfig, *, metrics: Metrics | None = None) -> web.Application:
    """The application for ``config``: one POST endpoint per route plus operations endpoints."""
    app = web.Application(
        middlewares=[error_middleware], client_max_size=config.server.max_body_bytes
    )
    state = build_state(config, metrics)
    app[STATE] = StateHolder(state)
    app.cleanup_ctx.append(_metrics_ctx)
    app.on_response_prepare.append(close_after_chunked_body)
    app.cleanup_ctx.append(_client_session_ctx)
    app.cleanup_ctx.append(_pools_ctx)
    install_features(app, state)
    install_resume(app, state)
    install_tracing(app, state)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    if config.server.playground:
        app.router.add_get("/v1/routes", handle_routes)
        app.router.add_get("/", handle_index)
        app.router.add_static("/static/", STATIC_DIR, append_version=False)
    install_frontdoor(app)
    # Configured routes are looked up in the current state's table (so a reload can change
    # them); request text never builds a path. The start-up routes' exact paths resolve in one
    # lookup (the catch-all's regex costs a few µs per request); the catch-all serves the rest,
    # including routes a reload adds, with the same handler.
    for route in config.routes:
        app.router.add_route("*", route.path, dispatch)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


async def dispatch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE].current
    runtime = state.routes_by_path.get(request.path)
    if runtime is None:
        resumed = await handle_resume(request, state)  # <route path>/<stream id>
        if resumed is not None:
            return resumed
        return json_error(NotFound(f"no route at {request.path}"))
    if request.method == "POST":
        return aiohttp_reply(await handle_stream(request))
    if request.method == "OPTIONS":
        return await handle_preflight(request)
    return await handle_wrong_method(request)


# -- the fast server (gateway/httpserver.py) ---------------------------------------------------


async def handle_route(request: ServerRequest) -> Reply:
    """The fast server's handler: a configured route's or a front door's stream ``POST``."""
    try:
        endpoint = STREAM_ENDPOINTS.get(request.path)
        if endpoint is not None:
            return await endpoint(request)
        return await handle_stream(request)
    except Exception as exc:  # as error_middleware does on aiohttp's server
        return guard(exc, request.path)


def stream_listener(
    app: web.Application, aiohttp_server: web.Server, *, keepalive_timeout: float
) -> Listener:
    """The fast server's protocol factory for ``app``: stream ``POST`` requests are served by
    :func:`handle_route`, every other request by ``aiohttp_server`` (``gateway.httpserver``)."""
    holder = app[STATE]

    def claims(path: str) -> bool:
        return path in holder.current.routes_by_path or path in STREAM_ENDPOINTS

    def max_body_bytes() -> int:
        return holder.current.config.server.max_body_bytes

    return Listener(
        app,
        aiohttp_server,
        handler=handle_route,
        claims=claims,
        max_body_bytes=max_body_bytes,
        keepalive_timeout=keepalive_timeout,
    )
