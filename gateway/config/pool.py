"""Parsing a route's ``upstreams`` and ``balance`` (contract section 11): an upstream pool. Pure.

A route either has one ``upstream`` or a pool of two or more ``upstreams`` (deployments of the
route's provider), never both. Each deployment becomes an :class:`UpstreamTarget` with the route's
provider, timeouts and options, its own upstream keys, and ``deployment`` set to its name, so the
rest of the gateway opens it like any target. ``RouteConfig.pool`` holds them with the balance
settings; ``RouteConfig.primary`` is the first deployment (see ``RouteConfig.targets``).

Errors are collected in the :class:`~gateway.config.fields.Reader` with their paths, e.g.
``routes[0].upstreams[1].weight: must be greater than zero (got 0)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from gateway.config import fields as f
from gateway.config.envsubst import join_path
from gateway.config.model import UpstreamConfig, UpstreamTarget

if TYPE_CHECKING:
    from gateway.adapters.base import Adapter

Strategy = Literal["round_robin", "weighted", "least_busy", "latency"]
STRATEGIES: tuple[Strategy, ...] = ("round_robin", "weighted", "least_busy", "latency")
"""The ``balance.strategy`` names (``gateway/pool/strategy.py`` has one class for each)."""

UPSTREAM_KEYS = ("base_url", "api_key", "model", "headers")
DEPLOYMENT_KEYS = ("name", *UPSTREAM_KEYS, "weight", "max_concurrent")
BALANCE_KEYS = ("strategy", "cooldown")
POOL_ROUTE_KEYS = ("upstreams", "balance")
"""Route keys this module adds to ``ROUTE_KEYS``."""


@dataclass(frozen=True, slots=True)
class Cooldown:
    """``failures`` failures within ``window`` seconds rest a deployment for ``duration``."""

    failures: int = 3
    window: float = 60.0
    duration: float = 30.0


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment of a pool: its name (a metrics label), target, weight and hard cap."""

    name: str
    target: UpstreamTarget
    weight: float = 1.0
    max_concurrent: int | None = None


@dataclass(frozen=True, slots=True)
class PoolConfig:
    deployments: tuple[Deployment, ...]
    strategy: Strategy = "round_robin"
    cooldown: Cooldown = field(default_factory=Cooldown)

    @property
    def targets(self) -> tuple[UpstreamTarget, ...]:
        return tuple(d.target for d in self.deployments)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.deployments)


_COOLDOWN: dict[str, f.Conv] = {
    "failures": f.integer(),
    "window": f.duration(),
    "duration": f.duration(),
}
_UPSTREAM_SPEC: dict[str, f.Conv] = {
    "base_url": f.url("http", "https"),
    "api_key": f.api_key,
    "model": f.string(nullable=True),
    "headers": f.headers,
}


MAX_WEIGHT = 1_000_000
"""The largest ``weight``: the weighted rotation sums weights as floats, where a deployment of
weight 1 beside one of 1e17 would never be chosen, and two of 1e308 overflow to infinity."""


def _weight(r: f.Reader, v: Any, path: str) -> Any:
    if isinstance(v, str):
        with contextlib.suppress(ValueError):
            v = float(v)
    if isinstance(v, bool) or not isinstance(v, int | float):
        r.error(path, f"expected a number, got {f.kind(v)}")
        return f.BAD
    if not v > 0:
        r.error(path, f"must be greater than zero (got {v!r})")
        return f.BAD
    if v > MAX_WEIGHT:
        r.error(path, f"must be at most {MAX_WEIGHT} (got {v!r})")
        return f.BAD
    return float(v)


_DEPLOYMENT_SIMPLE: dict[str, f.Conv] = {
    "weight": _weight,
    "max_concurrent": f.integer(nullable=True),
}


def has_pool(m: Mapping[str, Any]) -> bool:
    """Whether a route mapping declares a pool (then :func:`parse_pool` reads its targets)."""
    return "upstreams" in m or "balance" in m


def parse_pool(
    r: f.Reader,
    m: Mapping[str, Any],
    path: str,
    adapters: Mapping[str, type[Adapter]],
    parse_target: Any,
    check_name: Any,
) -> PoolConfig | None:
    """The pool of route mapping ``m`` at ``path``; ``None`` after errors (all recorded).

    ``parse_target`` and ``check_name`` are those of ``routes.py`` (passed in to keep the import
    graph acyclic): the first checks the route's provider, timeouts and options once for all
    deployments, the second each deployment's name.
    """
    up_path = join_path(path, "upstreams")
    if "upstreams" not in m:
        r.error(join_path(path, "balance"), "only valid with 'upstreams' (a pool of deployments)")
        return None
    both = "upstream" in m
    if both:
        r.error(path, "use either 'upstream' (one) or 'upstreams' (a pool), not both")
    balance = _balance(r, m.get("balance"), join_path(path, "balance"))
    base = _base_target(r, m, path, adapters, parse_target)
    items = r.sequence(m["upstreams"], up_path)
    if items is None:
        return None
    if len(items) < 2:
        r.error(
            up_path,
            f"a pool needs two or more deployments (got {len(items)}); "
            "for a single upstream use 'upstream:'",
        )
        return None
    adapter = None if base is None else adapters.get(base.provider)
    deployments: list[Deployment] = []
    seen: dict[str, str] = {}
    ok = True
    for i, item in enumerate(items):
        where = join_path(up_path, i)
        dep = _deployment(r, item, where, base, adapter, check_name)
        if dep is None:
            ok = False
            continue
        if dep.name in seen:
            r.error(
                join_path(where, "name"),
                f"duplicate deployment name {dep.name!r} (also {seen[dep.name]})",
            )
            ok = False
            continue
        seen[dep.name] = where
        deployments.append(dep)
    if both or not ok or base is None or balance is None:
        return None
    strategy, cooldown = balance
    return PoolConfig(tuple(deployments), strategy, cooldown)


def _balance(r: f.Reader, raw: Any, path: str) -> tuple[Strategy, Cooldown] | None:
    section = r.mapping(raw, path, BALANCE_KEYS)
    if section is None:
        return None
    strategy: Strategy = "round_robin"
    ok = True
    if "strategy" in section:
        v = section["strategy"]
        if isinstance(v, str) and v in STRATEGIES:
            strategy = v
        else:
            r.error(
                join_path(path, "strategy"),
                f"unknown strategy {v!r} (known: {', '.join(STRATEGIES)})",
            )
            ok = False
    before = len(r.errors)
    cooldown = r.build(Cooldown, section.get("cooldown"), join_path(path, "cooldown"), _COOLDOWN)
    ok = ok and len(r.errors) == before
    return (strategy, cooldown) if ok else None


def _base_target(
    r: f.Reader,
    m: Mapping[str, Any],
    path: str,
    adapters: Mapping[str, type[Adapter]],
    parse_target: Any,
) -> UpstreamTarget | None:
    """The route's provider, timeouts and options, checked once; upstreams come per deployment."""
    sub = f.Reader(r.silenced, r.sources)
    shared = {k: m[k] for k in ("provider", "timeouts", "options") if k in m}
    target: UpstreamTarget | None = parse_target(sub, shared, path, adapters)
    # parse_target asks for the route's `upstream` block; in a pool each deployment has its own,
    # and _deployment checks their base_url instead.
    missing = f"{join_path(path, 'upstream')}: "
    r.errors.extend(e for e in sub.errors if not e.startswith(missing))
    return target


def _deployment(
    r: f.Reader,
    raw: Any,
    where: str,
    base: UpstreamTarget | None,
    adapter: type[Adapter] | None,
    check_name: Any,
) -> Deployment | None:
    dm = r.mapping(raw, where, DEPLOYMENT_KEYS)
    if dm is None:
        return None
    before = len(r.errors)
    name = check_name(r, dm.get("name"), join_path(where, "name"))
    upstream = UpstreamConfig(
        **r.fields({k: v for k, v in dm.items() if k in _UPSTREAM_SPEC}, where, _UPSTREAM_SPEC)
    )
    simple = r.fields(dm, where, _DEPLOYMENT_SIMPLE)
    if (
        adapter is not None
        and adapter.needs_upstream
        and not (upstream.base_url or adapter.default_base_url)
        and "base_url" not in dm
    ):
        r.error(
            join_path(where, "base_url"),
            f"required by provider '{adapter.name}' (it has no default)",
        )
    if name is None or base is None or len(r.errors) != before:
        return None
    target = dataclasses.replace(base, upstream=upstream, deployment=name)
    return Deployment(name, target, **simple)
