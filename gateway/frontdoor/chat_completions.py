"""The OpenAI-compatible front door: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Any OpenAI SDK client can use every route: ``model`` names a configured route, the body is
mapped to the common request (:mod:`gateway.frontdoor.request_map`), and the answer is built
from the same token events every other format gets (:mod:`gateway.encoders.chat_completions`).

Both modes run through :func:`gateway.stream.start_stream`, so admission (auth, limits),
metrics, deadlines, heartbeats and abort propagation are those of every route. The front door is
a request decoder, two registered encoders and an error shape:

* ``stream: true``: the ``chat-completions`` encoder, streamed.
* ``stream`` false or absent: the buffered ``chat-completions-json`` encoder, whose answer waits
  for the terminal event, so an upstream failure is still an error status (502, 504 ...). If the
  first heartbeat falls due first (``server.heartbeat_interval`` of silence toward the client),
  it commits to ``200`` and sends a newline per interval (JSON allows leading whitespace);
  a later failure is then an error document with status 200.

Errors before the answer use the OpenAI-compatible error shape
``{"error": {message, type, param, code}}``; a 400's ``param`` is the client's field its message
names (``messages[0].role``). Only reading the body and finding the route run before the
admission (:mod:`gateway.frontdoor.entry`); every refusal carries an ``X-Request-Id``.
Differences from the real API: one choice (``n`` > 1 is a 400), text content only, and the
body's ``model`` never overrides the route's upstream model.
"""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from gateway.encoders.base import Encoder
from gateway.encoders.chat_completions import ChatChunkEncoder, CompletionEncoder, error_body
from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.frontdoor.compat_request import param_of
from gateway.frontdoor.cors import union_headers
from gateway.frontdoor.entry import find_route, read_body, refuse, retry_header
from gateway.frontdoor.passthrough import frontdoor_attempts
from gateway.frontdoor.request_map import to_common
from gateway.http import ClientRequest, json_response
from gateway.httpexchange import Reply
from gateway.request import parse_request
from gateway.state import STATE
from gateway.stream import StreamPlan, start_stream

API = "chat_completions"
"""This front door's API (an adapter speaking it natively is passed through)."""


def compat_error(exc: GatewayError, headers: dict[str, str] | None = None) -> web.Response:
    """``exc`` in the OpenAI-compatible error shape, with its status and headers."""
    return _compat_error(exc, headers=headers)


_CALL_FIELD = re.compile(r"^(messages\[\d+\]\.tool_calls\[\d+\])\.(name|arguments)\b")
"""A tool call's field as the common request names it; the client's is under ``function``."""


def _chat_error(exc: GatewayError, headers: dict[str, str] | None = None) -> web.Response:
    """:func:`request_error` naming the client's own field (the request mapping is 1:1, see
    :mod:`gateway.frontdoor.request_map`, but for a tool call's ``name`` and ``arguments``,
    which the client sends under ``function``)."""
    if isinstance(exc, InvalidRequest) and _CALL_FIELD.match(exc.message):
        exc = InvalidRequest(_CALL_FIELD.sub(r"\1.function.\2", exc.message, count=1))
    return request_error(exc, headers)


def request_error(exc: GatewayError, headers: dict[str, str] | None = None) -> web.Response:
    """:func:`compat_error` with ``param``: a 400 names the field its message names
    (``messages[0].role: ...``, see :func:`gateway.frontdoor.compat_request.param_of`)."""
    if not isinstance(exc, InvalidRequest):
        return _compat_error(exc, headers=headers)
    return _compat_error(exc, param_of(exc), headers=headers)


def refusal_error(exc: GatewayError, headers: dict[str, str] | None = None) -> web.Response:
    """:func:`request_error` for a refusal before the route is known: an unknown ``model`` is a
    404 ``model_not_found`` with ``param: "model"``, as the API answers it."""
    if isinstance(exc, NotFound):
        return _compat_error(exc, "model", "model_not_found", headers)
    return request_error(exc, headers)


def _compat_error(
    exc: GatewayError,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = error_body(code or exc.error_code, exc.message, exc.http_status, param)
    out = {**(headers or {}), **exc.headers, **retry_header(exc)}
    return json_response(body, status=exc.http_status, headers=out)


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: must be true or false")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidRequest("stream_options: must be an object")
    return stream, options.get("include_usage") is True


async def handle_chat_completions(request: ClientRequest) -> Reply:
    """``POST /v1/chat/completions``: the body is read before the route is known (``model``);
    every other check runs in ``prepare``, after the admission, as on a route path."""
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
        stream, include_usage = _stream_flags(body)
        chat = parse_request(to_common(body))
        encoder: Encoder
        if stream:
            encoder = ChatChunkEncoder(
                route, request_id, model=route.name, created=created, include_usage=include_usage
            )
        else:
            encoder = CompletionEncoder(route, request_id, model=route.name, created=created)
        attempts, encoder = frontdoor_attempts(runtime, chat, body, API, encoder)
        return StreamPlan(encoder, attempts, None, chat.max_tokens, chat)

    return await start_stream(
        request, state, runtime, prepare, received=received, errors=_chat_error, frontdoor=API
    )


async def handle_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: every route the key may use, as a model (names only).

    With auth on, a missing or wrong key is a 401 in the OpenAI-compatible shape. Both carry
    the CORS headers of the routes' ``cors`` together (:func:`union_headers`: the list names
    no one route).
    """
    state = request.app[STATE].current
    cors = union_headers(state, request)
    try:
        names = state.visible_routes(request.headers)
    except GatewayError as exc:
        return _compat_error(exc, headers=cors)
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "gateway"} for name in names]
    return json_response({"object": "list", "data": data}, headers=cors)
