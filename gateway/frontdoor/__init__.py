"""Client-facing front doors that copy a public API apps already speak (contract section 10).

Each front door is a request decoder (body -> common request), encoders in the registry
(``gateway/encoders``) and an error shape; the stream itself is the one every route path runs.
:func:`install_frontdoor` registers their endpoints on the app; ``build_app`` calls it before
the catch-all route of the configured routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import GatewayError, MethodNotAllowed
from gateway.frontdoor.chat_completions import (
    compat_error,
    handle_chat_completions,
    handle_models,
)
from gateway.frontdoor.cors import frontdoor_preflight, is_preflight, union_headers
from gateway.frontdoor.messages import handle_count_tokens, handle_messages, messages_error
from gateway.frontdoor.responses import handle_responses
from gateway.http import ClientRequest, on_aiohttp
from gateway.httpexchange import Reply
from gateway.state import STATE

ErrorShape = Callable[[GatewayError, dict[str, str] | None], web.Response]

STREAM_ENDPOINTS: dict[str, Callable[[ClientRequest], Awaitable[Reply]]] = {
    "/v1/chat/completions": handle_chat_completions,
    "/v1/responses": handle_responses,
    "/v1/messages": handle_messages,
}
"""The front doors' ``POST`` endpoints that stream; the fast server (``gateway.httpserver``)
serves these too."""


def install_frontdoor(app: web.Application) -> None:
    """Register the OpenAI-compatible endpoints and the Messages endpoints. A CORS preflight on
    one of them is answered for the routes' ``cors`` together (:mod:`gateway.frontdoor.cors`);
    any other method is a 405 with ``Allow``, in that API's error shape (contract section 3)."""
    app.router.add_get("/v1/models", handle_models)
    app.router.add_route("*", "/v1/models", wrong_method("GET", compat_error))
    for path, handler in STREAM_ENDPOINTS.items():
        app.router.add_post(path, on_aiohttp(handler))
    app.router.add_post("/v1/messages/count_tokens", handle_count_tokens)
    for path in STREAM_ENDPOINTS.keys() | {"/v1/messages/count_tokens"}:
        shape = messages_error if path.startswith("/v1/messages") else compat_error
        app.router.add_route("*", path, wrong_method("POST", shape))


def wrong_method(
    allow: str, errors: ErrorShape
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler answering a CORS preflight for ``allow`` (``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method``: :func:`gateway.frontdoor.cors.frontdoor_preflight`),
    and any other method but ``allow`` with a 405 in the ``errors`` shape, which carries the
    CORS headers of an answer before the route is known (so a page can read it)."""

    async def refuse(request: web.Request) -> web.Response:
        state = request.app[STATE].current
        if is_preflight(request):
            return frontdoor_preflight(state, request, allow)
        exc = MethodNotAllowed(f"{request.method} is not allowed here; use {allow}")
        return errors(exc, {**union_headers(state, request), "Allow": allow})

    return refuse
