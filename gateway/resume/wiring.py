"""Resume in the running gateway: the stores' lifetime, the recording of a new stream, and the
``GET``/``DELETE <route path>/<stream id>`` handler.

* :func:`install_resume` (``build_app`` and every reload): the stores of the config's
  ``resume.store`` kinds, created on first need and kept for the app's lifetime (a reload keeps
  the streams being recorded), closed by one ``cleanup_ctx``.
* :func:`store_for`: the store of a route with resume on (``gateway.stream.recording`` opens
  the recording of each new stream in it).
* :func:`handle_resume` (the server's dispatch, for paths that are not a route): route lookup,
  the CORS preflight (routes with ``cors``), auth and the key's allow-list, then
  :func:`~gateway.resume.endpoints.resume_stream` or :func:`~gateway.resume.endpoints.stop_stream`,
  with the CORS headers of the request's own ``Origin``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.config.model import GatewayConfig, RouteConfig
from gateway.errors import GatewayError, MethodNotAllowed
from gateway.http import cors_headers, json_error, preflight
from gateway.metrics import Metrics, ResumeMetrics
from gateway.resume.base import STREAM_ID, Budget, ResumeStore, stream_owner
from gateway.resume.endpoints import resume_stream, stop_stream
from gateway.resume.memory import MemoryStore
from gateway.resume.redis_store import RedisStore
from gateway.state import GatewayState

log = logging.getLogger("gateway.resume")

GAUGE_REFRESH = 1.0
"""Seconds between two refreshes of the resume buffer's gauges (besides each ``/metrics``)."""

PREFLIGHT_METHODS = "GET, DELETE, OPTIONS"
PREFLIGHT_HEADERS = ("last-event-id",)
"""Allowed at ``<route path>/<stream id>`` besides the route's ``cors.allow_headers``: a
``fetch`` resume (``gateway-client.js``) sends ``Last-Event-ID``."""


class ResumeHolder:
    """App-lifetime stores (one per kind), sharing one per-process :class:`Budget`."""

    def __init__(self, config: GatewayConfig, metrics: Metrics) -> None:
        limits = config.limits
        self.metrics = ResumeMetrics(metrics.registry)
        self.budget = Budget(limits.max_resume_buffer_bytes, limits.max_detached_streams)
        self.metrics.watch(self.budget)
        self.stores: dict[str, ResumeStore] = {}
        metrics.before_exposition.append(self.refresh)

    def ensure(self, config: GatewayConfig) -> None:
        """Create the stores ``config``'s routes use and that do not exist yet (a reload that
        changes ``limits.redis_url`` gets a store on the new server; the old one stays open
        for the streams it records, until exit)."""
        for route in config.routes:
            key = store_key(route, config)
            if not route.resume.enabled or key in self.stores:
                continue
            if route.resume.store == "redis":
                self.stores[key] = RedisStore(self.budget, config.limits.redis_url)
            else:
                self.stores[key] = MemoryStore(self.budget)

    async def cleanup_ctx(self, app: web.Application) -> AsyncIterator[None]:
        for store in list(self.stores.values()):
            await store.warm()
        gauges = asyncio.create_task(self._refresh_gauges())
        yield
        gauges.cancel()
        for store in self.stores.values():
            await store.close()
        self.stores.clear()

    def refresh(self) -> None:
        """Forget the expired streams, then set the buffer gauges (before each ``/metrics``
        and once a second): the bytes of a stream whose window ended are released even when
        no request comes to look it up (they stayed held, and shown, until one did)."""
        for store in self.stores.values():
            store.expire()
        self.metrics.refresh()

    async def _refresh_gauges(self) -> None:
        """:meth:`refresh` once a second (with ``--workers``, another worker may serve
        ``/metrics`` from this worker's last written values)."""
        while True:
            await asyncio.sleep(GAUGE_REFRESH)
            self.refresh()


RESUME: web.AppKey[ResumeHolder] = web.AppKey("gateway_resume", ResumeHolder)


def install_resume(app: web.Application, state: GatewayState) -> None:
    """Make the stores ``state``'s config needs and hang them on the state (start-up, reload)."""
    holder = app.get(RESUME)
    if holder is None:
        holder = ResumeHolder(state.config, state.metrics)
        if not app.frozen:
            app[RESUME] = holder
            app.cleanup_ctx.append(holder.cleanup_ctx)
    holder.ensure(state.config)
    state.extras["resume"] = holder


def store_for(state: GatewayState, route: RouteConfig) -> ResumeStore | None:
    """The store of ``route``'s resume (``None``: resume off, or not installed)."""
    holder = state.extras.get("resume")
    if not isinstance(holder, ResumeHolder) or not route.resume.enabled:
        return None
    return holder.stores.get(store_key(route, state.config))


def store_key(route: RouteConfig, config: GatewayConfig) -> str:
    """Which of the process's stores ``route`` uses under ``config``: by kind, and for Redis by
    server too (a reload may point ``limits.redis_url`` elsewhere)."""
    kind = route.resume.store
    return f"redis {config.limits.redis_url}" if kind == "redis" else kind


async def handle_resume(request: web.Request, state: GatewayState) -> web.StreamResponse | None:
    """``GET``/``DELETE <route path>/<stream id>``; ``None`` when the path is not one."""
    base, _, stream_id = request.path.rpartition("/")
    runtime = state.routes_by_path.get(base)
    if runtime is None or not stream_id:
        return None
    route = runtime.config
    store = store_for(state, route)
    if store is None:
        return None
    if request.method == "OPTIONS" and route.cors is not None:
        return preflight(request, route, PREFLIGHT_METHODS, PREFLIGHT_HEADERS)
    cors = cors_headers(request, route)
    if request.method not in ("GET", "DELETE"):
        return json_error(
            MethodNotAllowed(f"{request.method} is not allowed here"),
            {"Allow": "GET, DELETE", **cors},
        )
    app: str | None = None
    if state.auth is not None:
        try:
            key = state.auth.authenticate(request.headers)  # 401
            state.auth.authorize(key, route)  # 403: the key may not use this route
        except GatewayError as exc:
            return json_error(exc, cors)
        app = key.name
    owner = stream_owner(route.name, app)
    # the id only when it is one the gateway could have made: the path is the client's text
    line = {"route": route.name, "id": stream_id if STREAM_ID.fullmatch(stream_id) else None}
    line["app"] = app
    holder = state.extras["resume"]
    metrics = holder.metrics if isinstance(holder, ResumeHolder) else None
    if request.method == "GET":
        route_metrics = state.route_metrics.get(route.name)
        return await resume_stream(
            request,
            store,
            stream_id,
            owner,
            heartbeat=state.config.server.heartbeat_interval,
            write_timeout=state.config.server.write_timeout,
            cors=cors,
            metrics=metrics,
            slow_client=route_metrics.slow_client if route_metrics is not None else None,
            log_line=line,
        )
    return await stop_stream(store, stream_id, owner, cors=cors, metrics=metrics, log_line=line)
