"""CORS on the front doors: a page on another origin may use them where a route allows it.

A route path knows its route, and so its ``cors``, from the URL. A front door learns its route
from the body's ``model``, which a preflight (``OPTIONS``, no body) never carries, and which a
refusal before the route is known (401, 400, 404, 413, 415, 503, 405) could not name. Those
answers, and ``GET /v1/models`` (no route at all), follow the **union** of the current config's
routes' ``cors``: an origin is allowed when some route allows it (:func:`union_headers`,
:func:`frontdoor_preflight`). The answer of a known route (its stream, its refusals after the
admission) still carries only that route's own CORS headers
(:func:`gateway.http.cors_headers`), so a route that does not list an origin stays unreadable
to it even though the preflight passed.

The preflight allows the endpoint's one method and echoes the request headers the browser asks
for (``Access-Control-Request-Headers``: the SDKs send their own, ``x-stainless-*``, the
Messages API's version and beta headers ...), each checked to be an HTTP header-name token;
``Max-Age`` is the smallest ``cors.max_age`` of the routes that allow the origin. Nothing here
runs on an admitted stream: the union is computed only for preflights, refusals and the models
list, per request (a loop over the configured routes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from aiohttp import web

from gateway.config.model import CorsConfig
from gateway.http import EXPOSED_HEADERS, ClientRequest, allowed_origin
from gateway.state import GatewayState

PREFLIGHT_VARY = "Origin, Access-Control-Request-Headers"
"""``Vary`` of an allowed preflight: its answer depends on both (the allowed headers are
echoed)."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP field name (RFC 9110 ``token``)."""


def allowing(configs: Iterable[CorsConfig], origin: str | None) -> list[CorsConfig]:
    """The ``cors`` blocks among ``configs`` that allow ``origin`` (none without an origin)."""
    if not origin:
        return []
    return [cors for cors in configs if allowed_origin(cors, origin) is not None]


def allow_origin(blocks: list[CorsConfig], origin: str) -> str:
    """The ``Access-Control-Allow-Origin`` value for ``origin``, which some of ``blocks``
    allows: ``origin`` when one lists it, else ``*`` (only ``*`` blocks allow it; never with
    credentials), as a route path answers it (:func:`gateway.http.allowed_origin`)."""
    return origin if any(origin in cors.allow_origins for cors in blocks) else "*"


def answer_headers(configs: Iterable[CorsConfig], origin: str | None) -> dict[str, str]:
    """The CORS headers of a front-door answer given before its route is known, to a request
    from ``origin``, under the routes' ``configs`` (``cors`` blocks).

    No ``cors`` anywhere: none. Else ``Vary: Origin`` always (which routes allow the page
    depends on its origin: a cache must not hand one origin's answer to another), and, when
    some block allows ``origin``, ``Access-Control-Allow-Origin`` (:func:`allow_origin`) and
    ``Access-Control-Expose-Headers``.
    """
    configs = list(configs)
    if not configs:
        return {}
    blocks = allowing(configs, origin)
    if not blocks or origin is None:
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": allow_origin(blocks, origin),
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
        "Vary": "Origin",
    }


def requested_headers(value: str) -> list[str] | None:
    """The names in an ``Access-Control-Request-Headers`` value, lower case, each once, in
    order; ``None`` when one is not an HTTP header-name token (never echoed: the preflight is
    refused). Empty items (``a,,b``, surrounding spaces) are skipped."""
    names: dict[str, None] = {}
    for item in value.split(","):
        name = item.strip(" \t")
        if not name:
            continue
        if _TOKEN.fullmatch(name) is None:
            return None
        names[name.lower()] = None
    return list(names)


def preflight_answer(
    configs: Iterable[CorsConfig],
    origin: str | None,
    request_headers: str,
    method: str,
) -> web.Response:
    """The answer to a front-door preflight from ``origin`` asking for ``request_headers``
    (the ``Access-Control-Request-Headers`` value, ``""`` when absent) on an endpoint whose
    method is ``method``.

    ``204`` with ``Access-Control-Allow-Origin`` (:func:`allow_origin`),
    ``-Allow-Methods: <method>``, ``-Allow-Headers`` (the requested names, when any),
    ``-Max-Age`` (the smallest of the allowing blocks) and :data:`PREFLIGHT_VARY` when some
    block of ``configs`` allows ``origin``; else ``403`` with ``Vary: Origin`` and no allow headers
    (the browser then never sends the request), also for a requested name that is not a
    header-name token.
    """
    blocks = allowing(configs, origin)
    names = requested_headers(request_headers)
    if not blocks or names is None or origin is None:
        return web.Response(status=403, headers={"Vary": "Origin"})
    headers = {
        "Access-Control-Allow-Origin": allow_origin(blocks, origin),
        "Access-Control-Allow-Methods": method,
        "Access-Control-Max-Age": str(int(min(cors.max_age for cors in blocks))),
        "Vary": PREFLIGHT_VARY,
    }
    if names:
        headers["Access-Control-Allow-Headers"] = ", ".join(names)
    return web.Response(status=204, headers=headers)


def is_preflight(request: ClientRequest) -> bool:
    """Whether ``request`` is a CORS preflight: ``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method``."""
    headers = request.headers
    return (
        request.method == "OPTIONS"
        and "Origin" in headers
        and "Access-Control-Request-Method" in headers
    )


def union_headers(state: GatewayState, request: ClientRequest) -> dict[str, str]:
    """:func:`answer_headers` for ``request`` under ``state``'s routes."""
    return answer_headers(route_cors(state), request.headers.get("Origin"))


def frontdoor_preflight(state: GatewayState, request: ClientRequest, method: str) -> web.Response:
    """:func:`preflight_answer` for ``request`` (a preflight) under ``state``'s routes."""
    headers = request.headers
    return preflight_answer(
        route_cors(state),
        headers.get("Origin"),
        headers.get("Access-Control-Request-Headers", ""),
        method,
    )


def route_cors(state: GatewayState) -> list[CorsConfig]:
    """The ``cors`` blocks of ``state``'s routes (a reload's own, once it is on)."""
    routes = state.routes.values()
    return [runtime.config.cors for runtime in routes if runtime.config.cors is not None]
