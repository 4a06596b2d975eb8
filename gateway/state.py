"""What one running gateway holds: config, adapters, metrics, the shared client session, streams.

Built once per config (:func:`build_state`) and swapped whole on reload: a stream keeps the
state it started with, so a reload never changes a stream in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from gateway.adapters import ADAPTERS
from gateway.adapters.base import Adapter
from gateway.config.model import GatewayConfig, RouteConfig, UpstreamTarget
from gateway.metrics import Metrics, RouteMetrics

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.stream import StreamSession

Hook = Callable[["web.Request", "GatewayState", "RouteRuntime"], Awaitable[dict[str, Any]]]


@dataclass
class RouteRuntime:
    """A configured route with its adapters built (primary first, then fallbacks)."""

    config: RouteConfig
    targets: list[tuple[UpstreamTarget, Adapter]]


@dataclass
class GatewayState:
    config: GatewayConfig
    metrics: Metrics
    routes: dict[str, RouteRuntime]
    routes_by_path: dict[str, RouteRuntime]
    route_metrics: dict[str, RouteMetrics]
    session: aiohttp.ClientSession = field(init=False)
    sessions: set[StreamSession] = field(default_factory=set)
    draining: bool = False
    drain_tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    hooks: list[Hook] = field(default_factory=list)
    """Request hooks (auth, limits) run before the body is read; see ``features.py``."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Feature state (auth, limits) attached by their modules at start-up."""

    def try_drain(self, session: StreamSession) -> bool:
        """Hand an aborted stream's upstream to a drain task (bounded); False if refused."""
        if len(self.drain_tasks) >= self.config.limits.max_draining_streams:
            return False
        from gateway.drain import drain_stream

        task = asyncio.ensure_future(drain_stream(session))
        self.drain_tasks.add(task)
        task.add_done_callback(self.drain_tasks.discard)
        return True


def build_adapter(target: UpstreamTarget) -> Adapter:
    return ADAPTERS[target.provider](target.upstream, target.options)


def build_state(config: GatewayConfig, metrics: Metrics | None = None) -> GatewayState:
    """Resolve every route's adapters and bind its metrics. Pure apart from object creation."""
    metrics = metrics or Metrics()
    routes: dict[str, RouteRuntime] = {}
    for route in config.routes:
        routes[route.name] = RouteRuntime(route, [(t, build_adapter(t)) for t in route.targets])
    apps = [k.name for k in config.auth.keys] if config.auth else []
    metrics.precreate(
        routes,
        {r.name: [t.label for t in r.targets] for r in config.routes},
        apps,
    )
    return GatewayState(
        config=config,
        metrics=metrics,
        routes=routes,
        routes_by_path={rt.config.path: rt for rt in routes.values()},
        route_metrics={name: metrics.route(name) for name in routes},
    )
