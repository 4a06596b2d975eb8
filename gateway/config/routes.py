"""Parsing ``routes[]`` (contract sections 2 and 9): each route, its upstream targets, cross-checks.

Provider and format names are resolved through the registries passed in (the adapter and encoder
registries in production); nothing here knows a provider. Errors are collected in a
:class:`~gateway.config.fields.Reader`, never raised.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from gateway.config import fields as f
from gateway.config.envsubst import join_path
from gateway.config.model import (
    CorsConfig,
    RouteConfig,
    RouteLimits,
    TextMarkers,
    Timeouts,
    UpstreamConfig,
    UpstreamTarget,
)
from gateway.config.pool import POOL_ROUTE_KEYS, has_pool, parse_pool
from gateway.config.resume import check_route_resume, parse_resume

if TYPE_CHECKING:
    from gateway.adapters.base import Adapter

NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
"""Route and app-key names: safe as metrics labels and in URLs."""

RESERVED_PATHS = frozenset(
    {
        "/",
        "/metrics",
        "/healthz",
        "/readyz",
        "/v1/routes",
        "/v1/models",
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/messages",
        "/v1/messages/count_tokens",
    }
)
"""The gateway's own endpoints (operations, the playground, the front doors); ``/static`` and
everything below it are reserved too."""

_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")

TARGET_KEYS = ("provider", "upstream", "timeouts", "options")
_TIMEOUTS: dict[str, f.Conv] = {
    k: f.duration() for k in ("connect", "first_event", "idle", "total")
}
_UPSTREAM: dict[str, f.Conv] = {
    "base_url": f.url("http", "https"),
    "api_key": f.api_key,
    "model": f.string(nullable=True),
    "headers": f.headers,
}
_MARKERS: dict[str, f.Conv] = {
    k: f.string(nonempty=False) for k in ("created", "thinking", "clear", "end", "error")
}
_LIMITS: dict[str, f.Conv] = {
    k: f.integer(nullable=True)
    for k in ("concurrent_streams", "requests_per_minute", "tokens_per_minute")
}
_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>[a-z0-9._~-]+|\[[0-9a-f:.]+\])(?::(?P<port>\d{1,5}))?",
    re.IGNORECASE,
)
"""An origin as configured: ``scheme://host[:port]``, any scheme (``https``, an extension's,
an app's web view), an ASCII host (an IDN in its ``xn--`` form) or a bracketed IPv6 address."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ROUTE_SIMPLE: dict[str, f.Conv] = {
    "on_client_abort": f.choice("cancel", "drain", "detach"),
    "drain_timeout": f.duration(),
    "max_stream_duration": f.duration(nullable=True),
    "max_output_bytes": f.size(nullable=True),
    "allow_model_override": f.boolean,
    "request": f.choice("common", "native"),
}
ROUTE_KEYS = (
    "name",
    "path",
    "format",
    *TARGET_KEYS,
    "fallbacks",
    *_ROUTE_SIMPLE,
    "text_markers",
    "cors",
    "limits",
    "resume",
    *POOL_ROUTE_KEYS,
)


def _origin(r: f.Reader, v: Any, path: str) -> Any:
    """``*`` or an origin, in the form a browser's ``Origin`` header carries it (scheme and
    host in lower case, no default port), so that a request's origin compares exactly."""
    if v == "*":
        return v
    m = _ORIGIN.fullmatch(v) if isinstance(v, str) else None
    port = int(m["port"]) if m is not None and m["port"] is not None else None
    if m is None or (port is not None and not 0 < port < 65536):
        r.error(path, f"invalid origin {v!r} (use '*' or scheme://host[:port], no path)")
        return f.BAD
    scheme = m["scheme"].lower()
    kept = "" if port is None or _DEFAULT_PORTS.get(scheme) == port else f":{port}"
    return f"{scheme}://{m['host'].lower()}{kept}"


_CORS: dict[str, f.Conv] = {
    "allow_origins": f.str_tuple(_origin),
    "allow_headers": f.str_tuple(f.header_name),
    "max_age": f.duration(positive=False),
}
ROUTE_LIMITS = _LIMITS
"""Spec of a ``limits`` block of a route or an app key (shared with ``auth.keys[]``)."""
SECTION_SPECS: dict[type, Mapping[str, f.Conv]] = {
    Timeouts: _TIMEOUTS,
    UpstreamConfig: _UPSTREAM,
    TextMarkers: _MARKERS,
    RouteLimits: _LIMITS,
    CorsConfig: _CORS,
}
"""Each simple section's spec by model class (a test checks they match the dataclass fields)."""


def parse_target(
    r: f.Reader, m: Mapping[str, Any], path: str, adapters: Mapping[str, type[Adapter]]
) -> UpstreamTarget | None:
    """One upstream target from a route (or fallback) mapping ``m`` at ``path``.

    Checks the provider name, ``upstream`` (required with a ``base_url`` when the adapter needs
    one and has no default), ``timeouts``, and ``options`` through the adapter's
    ``parse_options``. Returns ``None`` when the provider is missing or unknown.
    """
    adapter = _adapter(r, m, path, adapters)
    upstream = r.build(UpstreamConfig, m.get("upstream"), join_path(path, "upstream"), _UPSTREAM)
    timeouts = r.build(Timeouts, m.get("timeouts"), join_path(path, "timeouts"), _TIMEOUTS)
    options_path = join_path(path, "options")
    options = r.free_mapping(m.get("options"), options_path)
    if adapter is None:
        return None
    block = m.get("upstream")
    if adapter.needs_upstream and not (upstream.base_url or adapter.default_base_url):
        if block is None:
            r.error(join_path(path, "upstream"), f"required by provider '{adapter.name}'")
        elif isinstance(block, dict) and block.get("base_url") is None:
            # (a base_url that was given but rejected is already reported)
            where = join_path(path, "upstream.base_url")
            r.error(where, f"required by provider '{adapter.name}' (it has no default)")
    normalised: Mapping[str, Any] = {}
    if options is not None:
        normalised, errors = adapter.parse_options(options, options_path)
        r.errors.extend(errors)
    return UpstreamTarget(adapter.name, upstream, timeouts, normalised)


def _adapter(
    r: f.Reader, m: Mapping[str, Any], path: str, adapters: Mapping[str, type[Adapter]]
) -> type[Adapter] | None:
    where = join_path(path, "provider")
    if "provider" not in m:
        r.error(where, "missing required key")
        return None
    name = m["provider"]
    adapter = adapters.get(name) if isinstance(name, str) else None
    if adapter is None:
        r.error(where, f"unknown provider {name!r} (known: {', '.join(sorted(adapters))})")
    return adapter


def parse_route(
    r: f.Reader,
    raw: Any,
    path: str,
    adapters: Mapping[str, type[Adapter]],
    encoders: Collection[str],
) -> RouteConfig | None:
    """One ``routes[i]`` entry; ``None`` when it is too broken to build (errors recorded)."""
    m = r.mapping(raw, path, ROUTE_KEYS)
    if m is None:
        return None
    name = check_name(r, m.get("name"), join_path(path, "name"))
    route_path = _route_path(r, m, path, name)
    fmt = _format(r, m.get("format", "tokens"), join_path(path, "format"), encoders)
    if has_pool(m):
        pool = parse_pool(r, m, path, adapters, parse_target, check_name)
        primary = pool.deployments[0].target if pool else None
    else:
        pool, primary = None, parse_target(r, m, path, adapters)
    fallbacks = _fallbacks(r, m.get("fallbacks"), join_path(path, "fallbacks"), adapters)
    simple = r.fields(m, path, _ROUTE_SIMPLE)
    markers = r.build(TextMarkers, m.get("text_markers"), join_path(path, "text_markers"), _MARKERS)
    cors_raw = m.get("cors")
    cors = (
        None if cors_raw is None else r.build(CorsConfig, cors_raw, join_path(path, "cors"), _CORS)
    )
    limits = r.build(RouteLimits, m.get("limits"), join_path(path, "limits"), _LIMITS)
    resume = parse_resume(r, m.get("resume"), join_path(path, "resume"))
    check_route_resume(r, path, resume, fmt, simple.get("on_client_abort"))
    if name is None or route_path is None or fmt is None or primary is None or fallbacks is None:
        return None
    return RouteConfig(
        name=name,
        path=route_path,
        format=fmt,
        primary=primary,
        fallbacks=fallbacks,
        text_markers=markers,
        cors=cors,
        limits=limits,
        resume=resume,
        pool=pool,
        **simple,
    )


def check_name(r: f.Reader, v: Any, path: str) -> str | None:
    """A required route or app-key name matching :data:`NAME`; ``None`` after an error."""
    if v is None:
        r.error(path, "missing required key")
        return None
    if not isinstance(v, str) or not NAME.fullmatch(v):
        r.error(path, f"invalid name {v!r} (use [a-z0-9][a-z0-9_-]*)")
        return None
    return v


def _route_path(r: f.Reader, m: Mapping[str, Any], path: str, name: str | None) -> str | None:
    where = join_path(path, "path")
    v = m.get("path")
    if v is None:
        return None if name is None else f"/v1/stream/{name}"
    if not isinstance(v, str) or not v.startswith("/"):
        r.error(where, f"must start with '/' (got {v!r})")
        return None
    segments = v[1:].split("/")
    if v != "/" and (
        any(not s for s in segments[:-1])
        or any(s in (".", "..") or (s and not _SEGMENT.fullmatch(s)) for s in segments)
    ):
        r.error(where, f"invalid path {v!r} (use /segments of letters, digits, '.', '_', '~', '-')")
        return None
    bare = v.rstrip("/") or "/"
    if bare in RESERVED_PATHS or bare == "/static" or bare.startswith("/static/"):
        r.error(where, f"{v!r} is reserved for the gateway's own endpoints")
        return None
    return v


def _format(r: f.Reader, v: Any, path: str, encoders: Collection[str]) -> str | None:
    if isinstance(v, str) and v in encoders:
        return v
    r.error(path, f"unknown format {v!r} (known: {', '.join(sorted(encoders))})")
    return None


def _fallbacks(
    r: f.Reader, raw: Any, path: str, adapters: Mapping[str, type[Adapter]]
) -> tuple[UpstreamTarget, ...] | None:
    items = r.sequence(raw, path)
    if items is None:
        return None
    out: list[UpstreamTarget] = []
    ok = True
    for i, item in enumerate(items):
        where = join_path(path, i)
        m = r.mapping(item, where, TARGET_KEYS)
        target = None if m is None else parse_target(r, m, where, adapters)
        if target is None:
            ok = False
        else:
            out.append(target)
    return tuple(out) if ok else None


def check_unique(r: f.Reader, routes: list[tuple[str, RouteConfig]]) -> None:
    """Route names and paths must be unique; ``routes`` holds ``(path, route)`` pairs."""
    names: dict[str, str] = {}
    paths: dict[str, str] = {}
    for where, route in routes:
        if route.name in names:
            first = names[route.name]
            r.error(join_path(where, "name"), f"duplicate route name {route.name!r} (also {first})")
            continue  # its default path would collide too: one mistake, one error
        names[route.name] = where
        if route.path in paths:
            first = paths[route.path]
            r.error(join_path(where, "path"), f"duplicate path {route.path!r} (also {first})")
        else:
            paths[route.path] = where
