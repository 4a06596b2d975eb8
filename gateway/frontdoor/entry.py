"""A front door's first step: read the body and find the route its ``model`` names.

A route path knows its route from the URL; a front door knows it only once the body is read.
So each front door handler does just this before :func:`gateway.stream.start_stream`:
:func:`read_body`, then :func:`find_route`. Every later check (the API's own body checks, the
``stream`` flag) runs in the stream's ``prepare``, after the admission, exactly as on a route
path: its refusal is counted against the route (``gateway_requests_total{outcome="rejected"}``,
``gateway_rejections_total{code}``), logged (``rejected``) and answered with an
``X-Request-Id``.

A request refused before its route is known (draining, a body that is not JSON or too large,
no or an unknown ``model``) goes through :func:`refuse`: it gets an ``X-Request-Id`` and a
``rejected`` log line with ``route: null`` too, and is counted in no series: there is no
route to count it under, and a series must never be named after a client's ``model``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError, InvalidRequest, NotFound, Unauthorized, Unavailable
from gateway.frontdoor.cors import union_headers
from gateway.http import ClientRequest, read_json
from gateway.ids import new_request_id
from gateway.logs import log_event
from gateway.state import GatewayState, RouteRuntime

Shape = Callable[[GatewayError, dict[str, str]], web.Response]
"""A front door's error shape: the error and the response headers to add."""

DRAINING_RETRY_AFTER = "1"
"""``Retry-After`` of a draining gateway's 503: another replica can take the request now."""

SDK_RETRY_AFTER_LIMIT = 120.0
"""Longest ``Retry-After`` (seconds) after which an SDK is still told to retry by itself: the
longest wait the OpenAI SDKs honour (beyond it they give up, while the Messages SDKs would
sleep that long inside the app's call)."""


def retry_header(exc: GatewayError) -> dict[str, str]:
    """The ``x-should-retry`` header of a front door's error answer, which the official SDKs
    obey over their own status rules (they retry every 5xx and 429 otherwise).

    ``"true"`` when ``exc`` is retryable and its ``Retry-After`` (if any) is at most
    :data:`SDK_RETRY_AFTER_LIMIT`; else ``"false"``: a deterministic failure (an upstream 4xx
    behind a 502, malformed upstream data, an output bound) would only be paid for again, and a
    long wait (a spent budget) is the app's to schedule, from the answer's ``Retry-After``.
    """
    retry = exc.retryable and _retry_after(exc) <= SDK_RETRY_AFTER_LIMIT
    return {"x-should-retry": "true" if retry else "false"}


def _retry_after(exc: GatewayError) -> float:
    """``exc``'s ``Retry-After`` in seconds (0 when it has none or it is not a number)."""
    try:
        return float(exc.headers.get("Retry-After", 0))
    except ValueError:
        return 0.0


async def read_body(request: ClientRequest, state: GatewayState) -> Any:
    """A front door's JSON body; raises Unavailable (503 with ``Retry-After``) while draining,
    else as ``read_json`` does (415, 413, 400 ``invalid_json``)."""
    if state.draining:
        headers = {"Retry-After": DRAINING_RETRY_AFTER}
        raise Unavailable("the gateway is shutting down", headers=headers)
    return await read_json(request, state.config.server)


def find_route(state: GatewayState, body: Any) -> RouteRuntime:
    """The route a front-door body names in ``model``; raises InvalidRequest / NotFound."""
    if not isinstance(body, dict):
        raise InvalidRequest("body: must be a JSON object")
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("model: is required and names a route (see GET /v1/models)")
    runtime = state.routes.get(name)
    if runtime is None:
        raise NotFound(f"model: no route named {name!r} (see GET /v1/models)")
    return runtime


def auth_first(state: GatewayState, request: ClientRequest, exc: GatewayError) -> GatewayError:
    """What to answer a front-door request that failed before its admission: with auth on, a
    missing or wrong key's 401 comes first, else ``exc``.

    A front door reads its body before it knows the route (``model``), so these checks run
    before the admission's auth; without this a client with no key could tell the route names
    (404 against 401) and the body checks. Only the failure path pays for it: an admitted
    request is authenticated once, by the admission.
    """
    return _caller(state, request, exc)[0]


def refuse(
    state: GatewayState, request: ClientRequest, exc: GatewayError, shape: Shape
) -> web.Response:
    """Answer a request refused before its route was known, in the front door's ``shape``.

    With auth on, a missing or wrong key's 401 comes first (:func:`auth_first`). The answer
    carries a new ``X-Request-Id``, and the refusal is logged (``rejected``, ``route: null``,
    the error's code, the key's name as ``app``) under that id, so a client quoting it can be
    found; it is counted in no series (see the module's docstring). It carries the CORS headers
    of the routes' ``cors`` together (:func:`gateway.frontdoor.cors.union_headers`), so a page
    on an origin some route allows can read it.
    """
    failure, app = _caller(state, request, exc)
    request_id = new_request_id()
    log_event("rejected", route=None, id=request_id, code=failure.error_code, app=app)
    return shape(failure, {**union_headers(state, request), "X-Request-Id": request_id})


def _caller(
    state: GatewayState, request: ClientRequest, exc: GatewayError
) -> tuple[GatewayError, str | None]:
    """``exc``, or the 401 of a missing or wrong key (with auth on), and the key's name."""
    if state.auth is None or isinstance(exc, Unauthorized):
        return exc, None
    try:
        key = state.auth.authenticate(request.headers)
    except Unauthorized as refusal:
        return refusal, None
    return exc, key.name
