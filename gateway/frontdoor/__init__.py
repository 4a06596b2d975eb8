"""Client-facing front doors that copy a public API apps already speak (contract section 10).

Each front door is a request decoder (body -> common request), encoders in the registry
(``gateway/encoders``) and an error shape; the stream itself is the one every route path runs.
:func:`install_frontdoor` registers their endpoints on the app; ``build_app`` calls it before
the catch-all route of the configured routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.frontdoor.chat_completions import handle_chat_completions, handle_models
from gateway.frontdoor.messages import handle_count_tokens, handle_messages
from gateway.frontdoor.responses import handle_responses
from gateway.http import ClientRequest, on_aiohttp
from gateway.httpexchange import Reply

STREAM_ENDPOINTS: dict[str, Callable[[ClientRequest], Awaitable[Reply]]] = {
    "/v1/chat/completions": handle_chat_completions,
    "/v1/responses": handle_responses,
    "/v1/messages": handle_messages,
}
"""The front doors' ``POST`` endpoints that stream; the fast server (``gateway.httpserver``)
serves these too."""


def install_frontdoor(app: web.Application) -> None:
    """Register the OpenAI-compatible endpoints and the Messages endpoints."""
    app.router.add_get("/v1/models", handle_models)
    for path, handler in STREAM_ENDPOINTS.items():
        app.router.add_post(path, on_aiohttp(handler))
    app.router.add_post("/v1/messages/count_tokens", handle_count_tokens)
