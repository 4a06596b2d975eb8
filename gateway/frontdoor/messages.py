"""The Anthropic Messages front door: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

The Anthropic SDK and Claude Code can use every route: ``model`` names a configured route, the
body is mapped to the common request (:mod:`gateway.frontdoor.messages_request`), and the
answer is built from the same token events every other format gets
(:mod:`gateway.encoders.messages`). Auth is the usual hook (``x-api-key`` or Bearer);
``anthropic-version`` and ``anthropic-beta`` headers are accepted and not needed.

This module is only glue, the same as :mod:`gateway.frontdoor.chat_completions`: both modes run
through :func:`gateway.stream.start_stream` (admission, limits, metrics, deadlines, heartbeats as
``event: ping``, abort propagation), ``stream`` false with the buffered encoder.
Errors before the answer use the Messages API's shape
``{"type": "error", "error": {type, message}, "request_id"}``, the id also in ``request-id``
and ``X-Request-Id``. Only reading the body and finding the route run before the admission
(:mod:`gateway.frontdoor.entry`): a 400 is counted against the route, as on a route path.
"""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp import web

from gateway.admission import NO_AUTH, Admission
from gateway.encoders.base import Encoder
from gateway.encoders.messages import (
    MessageEncoder,
    MessagesStreamEncoder,
    error_doc,
    error_type_for_status,
)
from gateway.errors import GatewayError
from gateway.frontdoor.cors import union_headers
from gateway.frontdoor.entry import auth_first, find_route, read_body, refuse, retry_header
from gateway.frontdoor.messages_request import stream_flag, to_common
from gateway.frontdoor.passthrough import frontdoor_attempts
from gateway.http import ClientRequest, cors_headers, json_response
from gateway.httpexchange import Reply
from gateway.jsonutil import dumps_str
from gateway.request import parse_request
from gateway.state import STATE
from gateway.stream import StreamPlan, start_stream

API = "messages"
"""This front door's API (an adapter speaking it natively is passed through)."""
CHARS_PER_TOKEN = 4
"""``count_tokens`` estimates: about four characters of request text per token."""


def messages_error(exc: GatewayError, headers: dict[str, str] | None = None) -> web.Response:
    """``exc`` as the Messages API's error document, with its status and headers.

    With the request's ``X-Request-Id`` in ``headers`` (every refusal of a stream request has
    one), the answer also carries it as the API's own ``request-id`` header and ``request_id``
    field, where the Messages SDKs read it (``APIStatusError.request_id``).
    """
    status = exc.http_status
    out = {**(headers or {}), **exc.headers, **retry_header(exc)}
    request_id = out.get("X-Request-Id")
    if request_id is not None:
        out["request-id"] = request_id
    body = error_doc(error_type_for_status(status), exc.message, request_id)
    return json_response(body, status=status, headers=out)


async def handle_messages(request: ClientRequest) -> Reply:
    """``POST /v1/messages``: the body is read before the route is known (``model``); it is
    decoded in ``prepare``, after the admission, as on a route path."""
    received = time.monotonic()
    state = request.app[STATE].current
    try:
        body = await read_body(request, state)
        runtime = find_route(state, body)
    except GatewayError as exc:
        return refuse(state, request, exc, messages_error)
    route = runtime.config

    async def prepare(request_id: str) -> StreamPlan:
        stream = stream_flag(body)
        chat = parse_request(to_common(body))
        encoder: Encoder
        if stream:
            encoder = MessagesStreamEncoder(route, request_id, model=route.name)
        else:
            encoder = MessageEncoder(route, request_id, model=route.name)
        attempts, encoder = frontdoor_attempts(runtime, chat, body, API, encoder)
        return StreamPlan(encoder, attempts, None, chat.max_tokens, chat)

    return await start_stream(
        request,
        state,
        runtime,
        prepare,
        received=received,
        errors=messages_error,
        frontdoor=API,
        id_header="request-id",  # the Messages SDKs' ``_request_id``
    )


def estimate_tokens(common: dict[str, Any]) -> int:
    """About how many input tokens ``common`` is: its text, tool calls and tool schemas at
    :data:`CHARS_PER_TOKEN` characters a token, plus a few per message. Not a tokenizer."""
    chars = 0
    for message in common["messages"]:
        chars += len(message.get("content") or "") + 4 * CHARS_PER_TOKEN
        for call in message.get("tool_calls") or ():
            chars += len(call["name"]) + len(call["arguments"])
    for tool in common.get("tools") or ():
        chars += len(tool["name"]) + len(tool.get("description") or "")
        chars += len(dumps_str(tool["parameters"]))
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


async def handle_count_tokens(request: web.Request) -> web.Response:
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, an estimate (see
    :func:`estimate_tokens`). Auth applies as for ``/v1/messages``; limits take nothing.

    CORS as on ``/v1/messages``: the route's own headers once ``model`` named it, those of
    the routes' ``cors`` together (:func:`union_headers`) on a refusal before that."""
    state = request.app[STATE].current
    admission: Admission = NO_AUTH
    cors: dict[str, str] | None = None
    try:
        body = await read_body(request, state)
        runtime = find_route(state, body)
        cors = cors_headers(request, runtime.config)
        if state.admit is not None:
            admission = await state.admit(request, state, runtime)
        common = to_common(body, require_max_tokens=False)
        parse_request(common)
    except GatewayError as exc:
        headers = union_headers(state, request) if cors is None else cors
        return messages_error(auth_first(state, request, exc), headers)
    finally:
        admission.release({})  # counting tokens streams nothing: it holds no limit
    return json_response({"input_tokens": estimate_tokens(common)}, headers=cors)
