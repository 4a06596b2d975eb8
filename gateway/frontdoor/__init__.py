"""Client-facing front doors that copy a well-known public API (today: OpenAI-compatible chat).

:func:`install_frontdoor` registers their endpoints on the app; ``build_app`` calls it before
the catch-all route of the configured routes.
"""

from __future__ import annotations

from aiohttp import web


def install_frontdoor(app: web.Application) -> None:
    """Register ``POST /v1/chat/completions`` and ``GET /v1/models``."""
    from gateway.frontdoor.chat_completions import handle_chat_completions, handle_models

    app.router.add_post("/v1/chat/completions", handle_chat_completions)
    app.router.add_get("/v1/models", handle_models)
    from gateway.frontdoor.messages import install_messages

    install_messages(app)
