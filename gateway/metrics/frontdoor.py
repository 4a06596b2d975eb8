"""Requests by the API the client spoke: the route's own path or a front door (contract 10)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter

from gateway.metrics.tally import Tally

FRONTDOORS = ("route", "chat_completions", "responses", "messages")
"""Closed set of ``frontdoor`` label values: the route's token-protocol path, then each front
door's API (the names adapters give in ``native_api``)."""


class FrontdoorMetrics:
    """``gateway_frontdoor_requests_total{route, frontdoor}``: admitted-or-rejected stream
    requests per route and entry API. Registered in the app's registry, pre-created at 0."""

    def __init__(self, registry: CollectorRegistry, tally: Tally) -> None:
        self._tally = tally
        self.requests = Counter(
            "gateway_frontdoor_requests",
            "Stream requests by route and the API the client spoke (route, or a front door).",
            ["route", "frontdoor"],
            registry=registry,
        )
        self._children: dict[tuple[str, str], Counter] = {}

    def precreate(self, routes: Iterable[str]) -> None:
        for route in routes:
            for frontdoor in FRONTDOORS:
                self.requests.labels(route, frontdoor)

    def request(self, route: str, frontdoor: str) -> None:
        """Count one request; a value outside :data:`FRONTDOORS` is a bug, counted as ``route``."""
        key = (route, frontdoor if frontdoor in FRONTDOORS else "route")
        child = self._children.get(key)
        if child is None:  # bound once per (route, front door): no label lookup per request
            child = self._children[key] = self.requests.labels(*key)
        self._tally.inc(child)
