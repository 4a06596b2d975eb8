"""The Responses front door, ``POST /v1/responses`` (contract section 10; OpenAI SDK clients).

``model`` names a configured route; the body is decoded by
:func:`gateway.frontdoor.responses_request.decode` into the common request, and the answer is
built from the route's token events by :mod:`gateway.encoders.responses`, for every
provider. The glue is that of the Chat Completions front door (``chat_completions.py``): the
same :func:`gateway.stream.start_stream` (admission, limits, metrics, deadlines, heartbeats, abort
propagation), ``stream: true`` with the streamed encoder, ``stream`` false with the buffered one.

Errors before the answer use the OpenAI-compatible error shape
``{"error": {message, type, param, code}}`` with ``param`` naming the client's field; an unknown
``model`` is a 404 ``model_not_found``. Only reading the body and finding the route run before
the admission (:mod:`gateway.frontdoor.entry`): a 400 is counted against the route, as on a
route path, and every refusal carries an ``X-Request-Id``.
The gateway keeps no conversation state: ``previous_response_id``, ``store: true``,
``background: true`` and built-in tools are a 400 naming the field, before any upstream call.
"""

from __future__ import annotations

import time

from gateway.encoders.base import Encoder
from gateway.encoders.responses import ResponseDocEncoder, ResponseEventEncoder, ResponseState
from gateway.errors import GatewayError
from gateway.frontdoor.chat_completions import refusal_error, request_error
from gateway.frontdoor.entry import find_route, read_body, refuse
from gateway.frontdoor.passthrough import frontdoor_attempts
from gateway.frontdoor.responses_request import decode
from gateway.http import ClientRequest
from gateway.httpexchange import Reply
from gateway.request import parse_request
from gateway.state import STATE
from gateway.stream import StreamPlan, start_stream

API = "responses"
"""This front door's API (an adapter speaking it natively is passed through)."""


async def handle_responses(request: ClientRequest) -> Reply:
    """``POST /v1/responses``: the body is read before the route is known (``model``); it is
    decoded in ``prepare``, after the admission, as on a route path."""
    received = time.monotonic()
    state = request.app[STATE].current
    try:
        body = await read_body(request, state)
        runtime = find_route(state, body)
    except GatewayError as exc:
        return refuse(state, request, exc, refusal_error)
    route = runtime.config
    created = int(time.time())

    async def prepare(request_id: str) -> StreamPlan:
        decoded = decode(body)
        chat = parse_request(decoded.common)
        answer = ResponseState(request_id, model=route.name, created=created, echo=decoded.echo)
        encoder: Encoder
        if decoded.stream:
            encoder = ResponseEventEncoder(route, request_id, answer)
        else:
            encoder = ResponseDocEncoder(route, request_id, answer)
        attempts, encoder = frontdoor_attempts(runtime, chat, body, API, encoder)
        return StreamPlan(encoder, attempts, None, chat.max_tokens, chat)

    return await start_stream(
        request, state, runtime, prepare, received=received, errors=request_error, frontdoor=API
    )
