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
from gateway.frontdoor.messages import handle_count_tokens, handle_messages, messages_error
from gateway.frontdoor.responses import handle_responses
from gateway.http import ClientRequest, on_aiohttp
from gateway.httpexchange import Reply

ErrorShape = Callable[[GatewayError, dict[str, str] | None], web.Response]

STREAM_ENDPOINTS: dict[str, Callable[[ClientRequest], Awaitable[Reply]]] = {
    "/v1/chat/completions": handle_chat_completions,
    "/v1/responses": handle_responses,
    "/v1/messages": handle_messages,
}
"""The front doors' ``POST`` endpoints that stream; the fast server (``gateway.httpserver``)
serves these too."""


def install_frontdoor(app: web.Application) -> None:
    """Register the OpenAI-compatible endpoints and the Messages endpoints. Any other method on
    one of them is a 405 with ``Allow``, in that API's error shape (contract section 3)."""
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
    """A handler answering any method but ``allow`` with a 405 in the ``errors`` shape."""

    async def refuse(request: web.Request) -> web.Response:
        exc = MethodNotAllowed(f"{request.method} is not allowed here; use {allow}")
        return errors(exc, {"Allow": allow})

    return refuse
