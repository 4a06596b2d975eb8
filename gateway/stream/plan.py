"""What a validated request streams: :class:`StreamPlan`, built by an endpoint's request decoder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from gateway.encoders.base import Encoder
from gateway.errors import GatewayError
from gateway.request import ChatRequest
from gateway.state import RouteRuntime
from gateway.stream.attempts import Attempt
from gateway.values import value

ErrorShape = Callable[[GatewayError, dict[str, str]], web.Response]
"""An API's pre-stream error response for a gateway error (``http.json_error`` by default)."""


@value
class StreamPlan:
    """The encoder (its ``buffered`` flag picks the sink), the upstream attempts in order, the
    model the request asked for, and its ``max_tokens`` (the limits' token reservation).
    ``chat``: the common request, when there is one (tracing's ``capture_content`` reads its
    messages)."""

    encoder: Encoder
    attempts: list[Attempt]
    model: str | None = None
    max_tokens: int | None = None
    chat: ChatRequest | None = None


def build_attempts(
    runtime: RouteRuntime, chat: ChatRequest | None, body: dict[str, Any]
) -> list[Attempt]:
    """One attempt per route target (primary or pool deployments, then fallbacks), each with its
    native request and the model it calls.

    ``chat`` is the common request; ``None`` on a ``request: native`` route, whose ``body``
    goes to each adapter as the provider's own request. Raises InvalidRequest where an adapter
    cannot express the request.
    """
    attempts = []
    primaries = len(runtime.config.pool.deployments) if runtime.config.pool else 1
    for index, (target, adapter) in enumerate(runtime.targets):
        own = chat if chat is None or index < primaries else fallback_request(chat)
        built = adapter.build_request(own) if own else adapter.build_native_request(body)
        attempts.append(Attempt(target, adapter, built, adapter.model_for(own)))
    return attempts


def fallback_request(chat: ChatRequest) -> ChatRequest:
    """The request a fallback gets: the route's model override (``allow_model_override``) names
    a model of the primary's provider, so a fallback calls its own configured model."""
    return chat if chat.model is None else replace(chat, model=None)
