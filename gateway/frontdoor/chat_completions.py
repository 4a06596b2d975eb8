"""The OpenAI-compatible front door: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Any OpenAI SDK client can use every route: ``model`` names a configured route, the body is
mapped to the common request (:mod:`gateway.frontdoor.request_map`), and the answer is built
from the same token events every other format gets (:mod:`gateway.frontdoor.encoders`).

Both modes run through :func:`gateway.server.start_stream`, so hooks (auth, limits), metrics,
deadlines, heartbeats and abort propagation are those of every route:

* ``stream: true``: a plain :class:`StreamSession` with the chunk encoder.
* ``stream`` false or absent: a :class:`HeldSession`, which holds the answer back until the
  terminal event, so an upstream failure is still an error status (502, 504 ...). If the
  first heartbeat falls due first (``server.heartbeat_interval`` of silence toward the client),
  it commits to ``200`` and sends a newline per interval (JSON allows leading whitespace);
  a later failure is then an error document with status 200.

Errors before the answer use the OpenAI-compatible error shape
``{"error": {message, type, param, code}}``.
Differences from the real API: one choice (``n`` > 1 is a 400), text content only, and the
body's ``model`` never overrides the route's upstream model.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError, InvalidRequest, NotFound, Unavailable
from gateway.frontdoor.encoders import ChatChunkEncoder, CompletionEncoder, error_body
from gateway.frontdoor.request_map import to_common
from gateway.http import json_response, read_body
from gateway.jsonutil import loads
from gateway.request import parse_request
from gateway.server import STATE, StreamPlan, _check_content_type, _decode_json, start_stream
from gateway.state import GatewayState, RouteRuntime
from gateway.stream import Attempt, StreamSession


class HeldSession(StreamSession):
    """A stream session whose client answer waits for the terminal event (non-streaming mode).

    Nothing is sent when the upstream answers: the encoder returns no bytes until the terminal
    event, and :meth:`_send` keeps those until :meth:`_finish` builds the response with the
    encoder's status. A heartbeat falling due first commits the response as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: list[bytes] = []

    async def _start(self) -> None:
        return  # hold the headers back (see the class docs)

    async def _send_heartbeat(self) -> None:
        if not self.started:
            try:
                await super()._start()
            except (ConnectionResetError, RuntimeError):
                return  # the client is gone; the handler's cancellation reports it
        await super()._send_heartbeat()

    async def _send(self, data: bytes) -> None:
        if self.started:
            await super()._send(data)
        else:
            self._held.append(data)

    def _finish(self) -> None:
        super()._finish()
        if self.response is None:
            status = getattr(self.encoder, "status", 200)  # a held encoder's own status
            headers = {"X-Request-Id": self.request_id, **self.extra_headers}
            self.response = web.Response(
                status=status,
                body=b"".join(self._held),
                content_type="application/json",
                headers=headers,
            )


def _compat_error(
    exc: GatewayError, param: str | None = None, code: str | None = None
) -> web.Response:
    body = error_body(code or exc.error_code, exc.message, exc.http_status, param)
    return json_response(body, status=exc.http_status, headers=exc.headers)


def _reshape_error(response: web.StreamResponse) -> web.StreamResponse:
    """Rewrite a gateway JSON error (``{"error": {code, message}}``) in the compatible shape."""
    if not isinstance(response, web.Response) or response.prepared or response.status < 400:
        return response
    body = response.body
    try:
        err = loads(body)["error"] if isinstance(body, bytes) else None
        if not isinstance(err, dict) or "type" in err:
            return response  # not ours, or already in the OpenAI-compatible shape
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        return response
    response.body = json_response(error_body(code, message, response.status)).body
    return response


def _find_route(state: GatewayState, body: Any) -> RouteRuntime:
    if not isinstance(body, dict):
        raise InvalidRequest("body: must be a JSON object")
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("model: is required and names a route (see GET /v1/models)")
    runtime = state.routes.get(name)
    if runtime is None:
        raise NotFound(f"model: no route named {name!r} (see GET /v1/models)")
    return runtime


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: must be true or false")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidRequest("stream_options: must be an object")
    return stream, options.get("include_usage") is True


async def handle_chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: the body is read before the route is known (``model``)."""
    received = time.monotonic()
    state = request.app[STATE].current
    try:
        if state.draining:
            raise Unavailable("the gateway is shutting down")
        _check_content_type(request)
        server = state.config.server
        body = _decode_json(
            await read_body(request, server.max_body_bytes, server.request_read_timeout)
        )
        runtime = _find_route(state, body)
        stream, include_usage = _stream_flags(body)
    except NotFound as exc:
        return _compat_error(exc, "model", "model_not_found")
    except GatewayError as exc:
        return _compat_error(exc)
    route = runtime.config
    created = int(time.time())

    async def prepare(request_id: str) -> StreamPlan:
        chat = parse_request(to_common(body))
        attempts = [Attempt(t, a, a.build_request(chat)) for t, a in runtime.targets]
        if stream:
            chunks = ChatChunkEncoder(
                route, request_id, model=route.name, created=created, include_usage=include_usage
            )
            return StreamPlan(chunks, attempts, max_tokens=chat.max_tokens)
        whole = CompletionEncoder(route, request_id, model=route.name, created=created)
        return StreamPlan(whole, attempts, session_type=HeldSession, max_tokens=chat.max_tokens)

    response = await start_stream(request, state, runtime, prepare, received=received)
    return _reshape_error(response)


async def handle_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: every route as a model (names only; never upstream details)."""
    state = request.app[STATE].current
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "gateway"}
        for name in state.routes
    ]
    return json_response({"object": "list", "data": data})
