"""Usage accounting series (contract section 13): cost per route and app, budget per app."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

NO_APP = ""
"""The ``app`` label of streams without an app key (auth off): empty, which PromQL treats as
an absent label."""


class AccountingMetrics:
    """``gateway_cost_usd_total{route,app}`` and ``gateway_budget_remaining_usd{app}``.

    Costs come from ``gateway/pricing`` once per stream (a stream of unknown price adds
    nothing); the remaining budget follows every reservation and settlement
    (``limits/budget.py``). With several workers each reports its own view of the shared
    budget, so the gauge keeps the most recent value.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cost_usd = Counter(
            "gateway_cost_usd",
            "Cost of streams in USD (provider usage at known prices), by route and app key.",
            ["route", "app"],
            registry=registry,
        )
        self.budget_remaining_usd = Gauge(
            "gateway_budget_remaining_usd",
            "USD an app key may still spend in its current budget period (reservations count).",
            ["app"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )

    def precreate(self, routes: Iterable[str], apps: Iterable[str] = ()) -> None:
        """Create the cost series at 0 for every route and app (and no app)."""
        apps = (NO_APP, *apps)
        for route in routes:
            for app in apps:
                self.cost_usd.labels(route, app)

    def cost(self, route: str, app: str | None, usd: float | None) -> None:
        """Add one stream's cost (``None``: unknown price, nothing is added)."""
        if usd is not None and usd > 0:
            self.cost_usd.labels(route, app or NO_APP).inc(usd)

    def budget_remaining(self, app: str, usd: float) -> None:
        self.budget_remaining_usd.labels(app).set(usd)
