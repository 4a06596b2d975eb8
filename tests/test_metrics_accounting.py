"""Accounting series (gateway/metrics.py, AccountingMetrics): cost per route and app, budgets."""

from __future__ import annotations

import pytest

from gateway.metrics import Metrics


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_cost_series_are_precreated_at_zero_for_every_route_and_app() -> None:
    m = Metrics()
    m.precreate(["demo"], apps=["web"])
    assert sample(m, "gateway_cost_usd_total", route="demo", app="web") == 0.0
    assert sample(m, "gateway_cost_usd_total", route="demo", app="") == 0.0


def test_cost_adds_known_costs_only() -> None:
    m = Metrics()
    m.accounting.cost("demo", "web", 0.25)
    m.accounting.cost("demo", "web", 0.5)
    m.accounting.cost("demo", "web", None)  # unknown price
    m.accounting.cost("demo", None, 0.125)  # auth off
    assert sample(m, "gateway_cost_usd_total", route="demo", app="web") == pytest.approx(0.75)
    assert sample(m, "gateway_cost_usd_total", route="demo", app="") == pytest.approx(0.125)


def test_budget_remaining_is_a_gauge_per_app() -> None:
    m = Metrics()
    m.accounting.budget_remaining("web", 12.5)
    m.accounting.budget_remaining("web", 10.0)
    assert sample(m, "gateway_budget_remaining_usd", app="web") == 10.0
