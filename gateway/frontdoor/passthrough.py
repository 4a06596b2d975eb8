"""Same-API pass-through for the front doors: which attempts go native, and the encoder.

Contract section 10: where the front door's API is the upstream's own (an adapter whose
``native_api`` names it), the request keeps every field the common request does not carry and
the client gets the upstream's own frames (:mod:`gateway.passthrough`,
:mod:`gateway.encoders.passthrough`). The common request is still decoded and validated first
(the front door's own 400s, ``max_tokens`` for the limits, and the request of every target of
another API, such as a fallback to another provider).

The native body is the client's body less ``model`` (it names the route; the adapter applies the
route's upstream model) and ``metadata`` (never forwarded, as on every path); the adapter's
:meth:`~gateway.adapters.base.Adapter.build_native_request` forces streaming and applies what else
the route pins.
"""

from __future__ import annotations

from typing import Any

from gateway.encoders.base import Encoder
from gateway.encoders.passthrough import PassThroughDocEncoder, PassThroughEncoder
from gateway.passthrough import FrameTap
from gateway.request import ChatRequest
from gateway.state import RouteRuntime
from gateway.stream.attempts import Attempt
from gateway.stream.plan import build_attempts, fallback_request

NOT_FORWARDED = ("model", "metadata")
"""Client body fields a pass-through request drops (the adapter sets the model)."""


def native_body(body: dict[str, Any], api: str = "") -> dict[str, Any]:
    """The client's body as a pass-through request starts from (a copy).

    Chat Completions: a client's ``stream_options.include_usage`` that is false is dropped, so
    the adapter asks the upstream for usage as on every request (the gateway counts tokens and
    cost from it, and settles budgets; the client still gets no usage chunk).
    """
    native = {k: v for k, v in body.items() if k not in NOT_FORWARDED}
    if api == "chat_completions":
        options = native.get("stream_options")
        if (
            isinstance(options, dict)
            and "include_usage" in options
            and not options["include_usage"]
        ):
            rest = {k: v for k, v in options.items() if k != "include_usage"}
            if rest:
                native["stream_options"] = rest
            else:
                del native["stream_options"]
    return native


def passes_through(runtime: RouteRuntime, api: str) -> bool:
    """Some target of the route speaks ``api`` natively."""
    return any(adapter.native_api == api for _, adapter in runtime.targets)


def frontdoor_attempts(
    runtime: RouteRuntime, chat: ChatRequest, body: dict[str, Any], api: str, encoder: Encoder
) -> tuple[list[Attempt], Encoder]:
    """The attempts and the encoder for a front door of ``api``.

    Without a target of that API: the usual attempts and ``encoder`` unchanged. With one: those
    targets get the native request, every attempt shares one :class:`FrameTap`, and ``encoder``
    is wrapped in the pass-through encoder (streamed or whole, after ``encoder.buffered``).
    Raises InvalidRequest where an adapter cannot express the request.
    """
    if not passes_through(runtime, api):
        return build_attempts(runtime, chat, body), encoder
    whole = encoder.buffered
    # A whole Chat Completions answer is the delegate's: its request passes, its frames need not.
    tap = None if whole and api not in PassThroughDocEncoder.builders else FrameTap(api)
    native = native_body(body, api)
    attempts = []
    primaries = len(runtime.config.pool.deployments) if runtime.config.pool else 1
    for index, (target, adapter) in enumerate(runtime.targets):
        own = chat if index < primaries else fallback_request(chat)
        if adapter.native_api == api:
            built = adapter.build_native_request(native)
        else:
            built = adapter.build_request(own)
        attempts.append(Attempt(target, adapter, built, adapter.model_for(own), tap))
    if tap is None:
        return attempts, encoder
    if whole:
        return attempts, PassThroughDocEncoder(encoder, tap)
    return attempts, PassThroughEncoder(encoder, tap)
