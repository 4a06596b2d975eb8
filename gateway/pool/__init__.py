"""Upstream pools (contract section 11): several deployments of one provider behind one route.

``state.py`` is the store interface (``memory.py``, ``redis_state.py`` + ``redis_lua.py``),
``strategy.py`` the balance strategies, ``pool.py`` the :class:`Pool` and its :class:`Lease`.
:func:`build_pools` makes one Pool per pooled route of a config, carrying state over from the
pools of the previous config state (SIGHUP reload).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.config.model import GatewayConfig, LimitsConfig
from gateway.pool.memory import MemoryPoolState
from gateway.pool.pool import FAILURE_REASONS, MAX_RETRY_AFTER, Lease, Pool, PoolRecorder, Refusal
from gateway.pool.redis_state import RedisPoolState
from gateway.pool.state import BackendError, PoolState


def _memory(
    limits: LimitsConfig, route: str, on_error: Callable[[Exception], None] | None
) -> PoolState:
    return MemoryPoolState()


def _redis(
    limits: LimitsConfig, route: str, on_error: Callable[[Exception], None] | None
) -> PoolState:
    return RedisPoolState(limits.redis_url, route, on_error=on_error)


STATES: dict[str, Callable[[LimitsConfig, str, Callable[[Exception], None] | None], PoolState]] = {
    "memory": _memory,
    "redis": _redis,
}
"""``limits.backend`` -> pool state factory (the same names as the limits backends)."""


def build_pools(
    config: GatewayConfig,
    *,
    recorders: Callable[[str, tuple[str, ...]], PoolRecorder] | None = None,
    on_error: Callable[[Exception], None] | None = None,
    previous: Mapping[str, Pool] | None = None,
) -> dict[str, Pool]:
    """One :class:`Pool` per route with ``upstreams``, by route name.

    ``recorders(route, deployment names)`` gives each pool its metrics (e.g.
    ``PoolMetrics.route``); ``previous`` are the pools of the config state being replaced: a
    pool of the same route takes their state over (:meth:`Pool.carry_from`). Pools of routes
    that disappeared (or lost their pool) are retired: their stores are closed once their open
    leases, which still release into them, have ended.
    """
    pools: dict[str, Pool] = {}
    limits = config.limits
    for route in config.routes:
        if route.pool is None:
            continue
        pool = Pool(
            route.name,
            route.pool,
            STATES[limits.backend](limits, route.name, on_error),
            recorder=recorders(route.name, route.pool.names) if recorders else None,
            on_backend_error=limits.on_backend_error,
            on_error=on_error,
        )
        old = (previous or {}).get(route.name)
        if old is not None:
            pool.carry_from(old)
        pools[route.name] = pool
    for name, old in (previous or {}).items():
        if name not in pools:
            old.retire()
    return pools


__all__ = [
    "FAILURE_REASONS",
    "MAX_RETRY_AFTER",
    "STATES",
    "BackendError",
    "Lease",
    "Pool",
    "PoolRecorder",
    "PoolState",
    "Refusal",
    "build_pools",
]
