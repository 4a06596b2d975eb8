"""Validation of a route's ``upstreams`` + ``balance`` (gateway/config/pool.py), through
``parse_config`` with the fake adapters."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import Timeouts, UpstreamConfig, UpstreamTarget
from gateway.config.pool import Cooldown, Deployment, PoolConfig
from tests.config.fakes import errors_of, one_route, parse


def dep(name: str, **keys: Any) -> dict[str, Any]:
    return {"name": name, "base_url": f"https://{name}.example/v1", "api_key": "k", **keys}


def pool_route(**keys: Any) -> dict[str, Any]:
    keys.setdefault("upstreams", [dep("east", weight=3, max_concurrent=200), dep("west")])
    return one_route(provider="bare", **keys)


def test_pool_deployments_are_targets_of_the_route_provider() -> None:
    doc = pool_route(
        timeouts={"first_event": "5s"},
        balance={"strategy": "least_busy", "cooldown": {"failures": 5, "window": "2m"}},
        fallbacks=[{"provider": "local"}],
    )
    (r,) = parse(doc).routes
    east = UpstreamTarget(
        "bare",
        UpstreamConfig("https://east.example/v1", "k"),
        Timeouts(first_event=5.0),
        {},
        deployment="east",
    )
    west = UpstreamTarget(
        "bare",
        UpstreamConfig("https://west.example/v1", "k"),
        Timeouts(first_event=5.0),
        {},
        deployment="west",
    )
    assert r.pool == PoolConfig(
        (Deployment("east", east, 3.0, 200), Deployment("west", west, 1.0, None)),
        "least_busy",
        Cooldown(failures=5, window=120.0, duration=30.0),
    )
    assert r.primary == east
    assert r.provider == "bare"
    assert r.targets == (east, west, UpstreamTarget("local"))
    assert r.pool.names == ("east", "west")


def test_balance_defaults() -> None:
    (r,) = parse(pool_route()).routes
    assert r.pool is not None
    assert (r.pool.strategy, r.pool.cooldown) == ("round_robin", Cooldown(3, 60.0, 30.0))


def test_single_upstream_route_has_no_pool() -> None:
    (r,) = parse(one_route(provider="bare", upstream={"base_url": "http://x"})).routes
    assert r.pool is None
    assert r.targets == (r.primary,)


@pytest.mark.parametrize("strategy", ["round_robin", "weighted", "least_busy", "latency"])
def test_every_strategy_is_accepted(strategy: str) -> None:
    (r,) = parse(pool_route(balance={"strategy": strategy})).routes
    assert r.pool is not None and r.pool.strategy == strategy


def test_options_are_checked_once_for_the_pool() -> None:
    doc = one_route(
        provider="tunable", options={"speed": 0}, upstreams=[{"name": "a"}, {"name": "b"}]
    )
    assert errors_of(doc) == ["routes[0].options.speed: must be a positive number"]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {"upstream": {"base_url": "http://x"}},
            "routes[0]: use either 'upstream' (one) or 'upstreams' (a pool), not both",
        ),
        (
            {"upstreams": [dep("only")]},
            "routes[0].upstreams: a pool needs two or more deployments (got 1); "
            "for a single upstream use 'upstream:'",
        ),
        ({"upstreams": {"a": 1}}, "routes[0].upstreams: expected a list, got a mapping"),
        (
            {"upstreams": [dep("a"), dep("a")]},
            "routes[0].upstreams[1].name: duplicate deployment name 'a' (also routes[0].upstreams[0])",
        ),
        (
            {"upstreams": [dep("a", weight=0), dep("b")]},
            "routes[0].upstreams[0].weight: must be greater than zero (got 0)",
        ),
        (
            {"upstreams": [dep("a", weight=-1.5), dep("b")]},
            "routes[0].upstreams[0].weight: must be greater than zero (got -1.5)",
        ),
        (
            {"upstreams": [dep("a", weight=1e308), dep("b")]},
            "routes[0].upstreams[0].weight: must be at most 1000000 (got 1e+308)",
        ),
        (
            {"upstreams": [dep("a", weight=float("inf")), dep("b")]},
            "routes[0].upstreams[0].weight: must be at most 1000000 (got inf)",
        ),
        (
            {"upstreams": [dep("a"), dep("b", weight="heavy")]},
            "routes[0].upstreams[1].weight: expected a number, got a string",
        ),
        (
            {"upstreams": [dep("a", max_concurrent=0), dep("b")]},
            "routes[0].upstreams[0].max_concurrent: must be >= 1 (got 0)",
        ),
        (
            {"upstreams": [dep("a"), dep("b", wieght=2)]},
            "routes[0].upstreams[1].wieght: unknown key (did you mean 'weight'?)",
        ),
        (
            {"upstreams": [dep("a"), dep("b", provider="local")]},
            "routes[0].upstreams[1].provider: unknown key "
            "(known: api_key, base_url, headers, max_concurrent, model, name, weight)",
        ),
        (
            {"upstreams": [dep("a"), {"base_url": "http://b"}]},
            "routes[0].upstreams[1].name: missing required key",
        ),
        (
            {"upstreams": [dep("a"), dep("B")]},
            "routes[0].upstreams[1].name: invalid name 'B' (use [a-z0-9][a-z0-9_-]*)",
        ),
        (
            {"upstreams": [dep("a"), {"name": "b"}]},
            "routes[0].upstreams[1].base_url: required by provider 'bare' (it has no default)",
        ),
        (
            {"balance": {"strategy": "fastest"}},
            "routes[0].balance.strategy: unknown strategy 'fastest' "
            "(known: round_robin, weighted, least_busy, latency)",
        ),
        (
            {"balance": {"cooldown": {"window": "60 parsecs"}}},
            "routes[0].balance.cooldown.window: ",
        ),
        (
            {"balance": {"cooldown": {"duration": "0s"}}},
            "routes[0].balance.cooldown.duration: must be greater than zero (got '0s')",
        ),
        (
            {"balance": {"cooldown": {"failures": "3s"}}},
            "routes[0].balance.cooldown.failures: expected an integer, got a string",
        ),
        (
            {"balance": {"cooldown": {"failure": 3}}},
            "routes[0].balance.cooldown.failure: unknown key (did you mean 'failures'?)",
        ),
        (
            {"balance": {"strategy": "weighted", "sticky": True}},
            "routes[0].balance.sticky: unknown key (known: cooldown, strategy)",
        ),
    ],
)
def test_bad_pools_name_their_path(keys: dict[str, Any], expected: str) -> None:
    errors = errors_of(pool_route(**keys))
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected)


def test_balance_without_upstreams_is_an_error() -> None:
    doc = one_route(provider="bare", upstream={"base_url": "http://x"}, balance={})
    assert errors_of(doc) == [
        "routes[0].balance: only valid with 'upstreams' (a pool of deployments)"
    ]


def test_a_default_base_url_is_enough_for_a_deployment() -> None:
    (r,) = parse(one_route(provider="remote", upstreams=[{"name": "a"}, {"name": "b"}])).routes
    assert r.pool is not None and [t.deployment for t in r.pool.targets] == ["a", "b"]


def test_unknown_provider_is_reported_once() -> None:
    doc = one_route(provider="nope", upstreams=[dep("a"), dep("b")])
    (error,) = errors_of(doc)
    assert error.startswith("routes[0].provider: unknown provider 'nope'")


def test_secrets_stay_out_of_the_repr() -> None:
    (r,) = parse(pool_route()).routes
    assert "k'" not in repr(r.pool).replace("'k'", "")  # no api_key value printed
    assert "api_key" not in repr(r.pool)


def test_check_config_summary_names_the_deployments() -> None:
    from gateway.config.parse import routes_summary

    doc = pool_route(balance={"strategy": "latency"}, fallbacks=[{"provider": "local"}])
    assert routes_summary(parse(doc)) == [
        "r  POST /v1/stream/r  provider=bare  format=tokens  upstreams=east,west  balance=latency"
        "  fallbacks=local"
    ]


def test_both_upstream_and_upstreams_still_reports_the_rest() -> None:
    doc = pool_route(upstream={"base_url": "http://x"}, balance={"strategy": "fastest"})
    assert errors_of(doc) == [
        "routes[0]: use either 'upstream' (one) or 'upstreams' (a pool), not both",
        "routes[0].balance.strategy: unknown strategy 'fastest' "
        "(known: round_robin, weighted, least_busy, latency)",
    ]
