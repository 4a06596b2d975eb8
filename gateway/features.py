"""Optional request features (auth, limits) plugged into the stream handler as hooks.

A hook is ``async (request, state, runtime) -> dict`` run before the body is read; it may raise
a :class:`~gateway.errors.GatewayError` (401, 429 ...) and may return context such as
``{"app": "<key name>", "release": callable}`` (``release(usage)`` is called when the stream ends).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.state import GatewayState


def install_features(app: web.Application, state: GatewayState) -> None:
    """Register the hooks the configuration asks for (none by default)."""
