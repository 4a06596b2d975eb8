"""Accounting config (gateway/config/accounting.py): ``pricing:`` and ``auth.keys[].budget``."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config.accounting import Budget, PriceOverride
from tests.config.fakes import errors_of, parse, route

ROUTES = [route(name="a")]


def key(**extra: Any) -> dict[str, Any]:
    return {"name": "web", "key": "secret-1", **extra}


def test_pricing_overrides_parse_with_cache_prices_defaulting_to_input() -> None:
    config = parse(
        {
            "routes": ROUTES,
            "pricing": [
                {
                    "model": "m1",
                    "input_per_mtok": 0.25,
                    "output_per_mtok": 2,
                    "cached_input_per_mtok": 0.025,
                },
                {
                    "model": "m2",
                    "input_per_mtok": "0",
                    "output_per_mtok": 0,
                    "cache_write_per_mtok": 1,
                },
            ],
        }
    )
    assert config.pricing == (
        PriceOverride("m1", 0.25, 2.0, 0.025, 0.25),
        PriceOverride("m2", 0.0, 0.0, 0.0, 1.0),
    )


def test_no_pricing_is_empty() -> None:
    assert parse({"routes": ROUTES}).pricing == ()


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (
            {"model": "m", "input_per_mtok": -1, "output_per_mtok": 1},
            "pricing[0].input_per_mtok: must be >= 0 (got -1)",
        ),
        (
            {
                "model": "m",
                "input_per_mtok": 1,
                "output_per_mtok": 1,
                "cached_input_per_mtok": -0.5,
            },
            "pricing[0].cached_input_per_mtok: must be >= 0 (got -0.5)",
        ),
        (
            {"model": "m", "input_per_mtok": 1, "output_per_mtok": 1, "cached_input_per_mtk": 1},
            "pricing[0].cached_input_per_mtk: unknown key (did you mean 'cached_input_per_mtok'?)",
        ),
        ({"input_per_mtok": 1, "output_per_mtok": 1}, "pricing[0].model: missing required key"),
        ({"model": "m", "input_per_mtok": 1}, "pricing[0].output_per_mtok: missing required key"),
        (
            {"model": "m", "input_per_mtok": "cheap", "output_per_mtok": 1},
            "pricing[0].input_per_mtok: expected a number, got a string",
        ),
        (
            {"model": "m", "input_per_mtok": float("inf"), "output_per_mtok": 1},
            "pricing[0].input_per_mtok: must be a finite number (got inf)",
        ),
        ("m", "pricing[0]: expected a mapping, got a string"),
    ],
)
def test_pricing_errors_name_their_path(entry: Any, error: str) -> None:
    assert error in errors_of({"routes": ROUTES, "pricing": [entry]})


def test_pricing_must_be_a_list_and_models_unique() -> None:
    assert errors_of({"routes": ROUTES, "pricing": {"model": "m"}}) == [
        "pricing: expected a list, got a mapping"
    ]
    twice = {"model": "m", "input_per_mtok": 1, "output_per_mtok": 1}
    assert errors_of({"routes": ROUTES, "pricing": [twice, twice]}) == [
        "pricing[1].model: duplicate price for model 'm' (also pricing[0])"
    ]


@pytest.mark.parametrize("per", ["1h", "1d", "7d", "30d"])
def test_budget_parses(per: str) -> None:
    config = parse({"routes": ROUTES, "auth": {"keys": [key(budget={"usd": 50, "per": per})]}})
    assert config.auth is not None
    budget = config.auth.keys[0].budget
    assert budget == Budget(50.0, per)
    assert budget.period == {"1h": 3600, "1d": 86400, "7d": 604800, "30d": 2592000}[per]


def test_a_key_without_budget_has_none() -> None:
    config = parse({"routes": ROUTES, "auth": {"keys": [key()]}})
    assert config.auth is not None and config.auth.keys[0].budget is None


P = "auth.keys[0].budget"


@pytest.mark.parametrize(
    ("budget", "error"),
    [
        ({"usd": 5, "per": "1w"}, f"{P}.per: must be one of 1h, 1d, 7d, 30d (got '1w')"),
        ({"usd": 0, "per": "1d"}, f"{P}.usd: must be greater than zero (got 0)"),
        ({"usd": -3, "per": "1d"}, f"{P}.usd: must be greater than zero (got -3)"),
        ({"usd": 5}, f"{P}.per: missing required key"),
        ({"per": "1d"}, f"{P}.usd: missing required key"),
        ({"usd": 5, "per": "1d", "cap": 1}, f"{P}.cap: unknown key (known: per, usd)"),
        (50, f"{P}: expected a mapping, got a number"),
    ],
)
def test_budget_errors_name_their_path(budget: Any, error: str) -> None:
    errors = errors_of({"routes": ROUTES, "auth": {"keys": [key(budget=budget)]}})
    assert error in errors


def test_a_budget_outside_auth_keys_is_an_error() -> None:
    """Budgets belong to app keys: there is no budget without ``auth``."""
    budget = {"usd": 5, "per": "1d"}
    assert errors_of({"routes": ROUTES, "budget": budget}) == [
        "budget: unknown key (known: auth, limits, pricing, routes, server, tracing)"
    ]
    errors = errors_of({"routes": [route(name="a", limits={"budget": budget})]})
    assert any(e.startswith("routes[0].limits.budget: unknown key") for e in errors)
