"""What one running gateway holds: config, adapters, metrics, the shared client session, streams.

Built once per config (:func:`build_state`) and swapped whole on reload: a stream keeps the
state it started with, so a reload never changes a stream in flight.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from gateway.adapters import ADAPTERS
from gateway.adapters.base import Adapter
from gateway.admission import Admission
from gateway.auth import Authenticator, may_use
from gateway.config.model import GatewayConfig, RouteConfig, UpstreamTarget
from gateway.errors import ConfigError
from gateway.http import ClientRequest
from gateway.limits import ErrorReporter
from gateway.metrics import Metrics, RouteMetrics
from gateway.pool import Pool, build_pools
from gateway.pricing import Pricer
from gateway.rawclient import RawClient, use_raw

Admit = Callable[[ClientRequest, "GatewayState", "RouteRuntime"], Awaitable[Admission]]
"""Auth and limits for one request, run before its body is read (``features.py`` builds it)."""


class Stoppable(Protocol):
    """An open stream as the gateway sees it from outside: it can be told to shut down."""

    def shutdown(self) -> None: ...


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
    raw_client: RawClient | None = None
    """The fast upstream client when ``server.upstream_client`` picks it (else the session)."""
    sessions: set[Stoppable] = field(default_factory=set)
    draining: bool = False
    drain_tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    auth: Authenticator | None = None
    """The app keys (``features.py``); ``None`` without ``auth``."""
    admit: Admit | None = None
    """Auth and limits (``features.py``); ``None``: every request is admitted as no app."""
    pricer: Pricer | None = None
    """Prices streams (``features.py``: one per config state, with its ``pricing:``)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Feature state (auth, limits) attached by their modules at start-up."""
    pools: dict[str, Pool] = field(default_factory=dict)
    """Upstream pools by route name (routes with ``upstreams``; ``gateway/pool/``)."""

    def visible_routes(self, headers: Mapping[str, str]) -> list[str]:
        """The route names the request's key may use (every route without auth).

        Raises :class:`~gateway.errors.Unauthorized` for a missing or wrong key.
        """
        key = self.auth.authenticate(headers) if self.auth is not None else None
        return [name for name in self.routes if may_use(key, name)]

    def try_drain(self, make: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run the drain ``make()`` builds as a task (bounded); False if refused."""
        if len(self.drain_tasks) >= self.config.limits.max_draining_streams:
            return False
        task = asyncio.ensure_future(make())
        self.drain_tasks.add(task)
        task.add_done_callback(self.drain_tasks.discard)
        return True


class StateHolder:
    """The current state; replaced whole on reload (streams keep the one they started with)."""

    def __init__(self, state: GatewayState) -> None:
        self.current = state


STATE: web.AppKey[StateHolder] = web.AppKey("gateway_state", StateHolder)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("gateway_session", aiohttp.ClientSession)
RAW_CLIENT: web.AppKey[RawClient] = web.AppKey("gateway_raw_client", RawClient)


def bind_clients(app: web.Application, state: GatewayState) -> None:
    """Give ``state`` the app's upstream clients (at start-up and on every reload)."""
    state.session = app[SESSION]
    raw = app.get(RAW_CLIENT)
    state.raw_client = (
        raw if raw is not None and use_raw(state.config.server.upstream_client) else None
    )


def build_adapter(target: UpstreamTarget) -> Adapter:
    return ADAPTERS[target.provider](target.upstream, target.options)


_KEY_PATH = re.compile(r"[a-z_][a-z0-9_.\[\]]*: ")
"""An error that starts with a key path (``upstream.api_key: ...``)."""


def target_paths(index: int, route: RouteConfig) -> list[str]:
    """The config key path of each of ``route.targets``, ``route`` being ``routes[index]``:
    ``routes[i]`` (or each ``routes[i].upstreams[k]`` of a pool), then each
    ``routes[i].fallbacks[j]``."""
    base = f"routes[{index}]"
    pool = route.pool
    firsts = [f"{base}.upstreams[{k}]" for k in range(len(pool.deployments))] if pool else [base]
    return [*firsts, *(f"{base}.fallbacks[{j}]" for j in range(len(route.fallbacks)))]


def _at(path: str, error: str) -> str:
    """An adapter's ``error`` (said of its own target) under the target's key ``path``."""
    if ".upstreams[" in path and error.startswith("upstream."):
        error = error.removeprefix("upstream.")  # a deployment's keys sit on it directly
    return f"{path}.{error}" if _KEY_PATH.match(error) else f"{path}: {error}"


def build_routes(config: GatewayConfig) -> dict[str, RouteRuntime]:
    """Every route with its adapters built. Raises :class:`ConfigError` listing each target
    an adapter refuses (credentials it needs, a key it cannot send), by key path."""
    routes: dict[str, RouteRuntime] = {}
    errors: list[str] = []
    for index, route in enumerate(config.routes):
        targets: list[tuple[UpstreamTarget, Adapter]] = []
        for path, target in zip(target_paths(index, route), route.targets, strict=True):
            try:
                targets.append((target, build_adapter(target)))
            except ConfigError as exc:
                errors.extend(_at(path, error) for error in exc.errors)
        routes[route.name] = RouteRuntime(route, targets)
    if errors:
        raise ConfigError(errors)
    return routes


def prepare_state(config: GatewayConfig, metrics: Metrics | None = None) -> GatewayState:
    """The state of ``config`` before :func:`activate`: adapters built, nothing shared touched
    (no series created, no pool taken over), so a reload that fails from here on leaves the
    running state as it was. Raises :class:`ConfigError` (see :func:`build_routes`)."""
    routes = build_routes(config)
    return GatewayState(
        config=config,
        metrics=metrics or Metrics(),
        routes=routes,
        routes_by_path={rt.config.path: rt for rt in routes.values()},
        route_metrics={},
    )


def activate(state: GatewayState, previous: GatewayState | None = None) -> None:
    """Bind ``state``'s metrics (pre-creating its series) and build its pools; ``previous`` is
    the state being replaced (a reload): pools of routes that still exist take over the state
    of their deployments, the others are retired (:func:`gateway.pool.build_pools`). The last
    step of a reload: from here on the previous state's pools belong to this one."""
    config, metrics = state.config, state.metrics
    apps = [k.name for k in config.auth.keys] if config.auth else []
    metrics.precreate(
        state.routes,
        {r.name: [t.label for t in r.targets] for r in config.routes},
        apps,
    )
    state.route_metrics = {name: metrics.route(name) for name in state.routes}
    state.pools = build_pools(
        config,
        recorders=metrics.pools.route,
        on_error=ErrorReporter(metrics),
        previous=previous.pools if previous is not None else None,
    )


def build_state(
    config: GatewayConfig, metrics: Metrics | None = None, previous: GatewayState | None = None
) -> GatewayState:
    """Resolve every route's adapters and bind its metrics (:func:`prepare_state`, then
    :func:`activate`). Pure apart from object creation; raises :class:`ConfigError`.

    ``previous`` is the state being replaced (a reload): pools of routes that still exist keep
    the state of their deployments (:func:`gateway.pool.build_pools`).
    """
    state = prepare_state(config, metrics)
    activate(state, previous)
    return state
