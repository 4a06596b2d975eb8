"""Upstream pool series (contract section 11): per deployment of a route's ``upstreams``.

The ``deployment`` label holds a pool deployment's ``name``, bounded by the config; every label
set is pre-created at 0 by :meth:`PoolMetrics.route`. The pool (``gateway/pool/pool.py``) calls
the small functions of :class:`PoolRouteMetrics` (its ``PoolRecorder`` protocol).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.metrics.buckets import TTFT_BUCKETS

POOL_OUTCOMES = (
    "ok",
    "connect",
    "timeout",
    "status_5xx",
    "status_429",
    "first_event_timeout",
    "abandoned",
)
"""Attempts on a pool deployment by result (``gateway_deployment_requests_total{outcome}``):
``ok`` = first event arrived, a failure reason, or ``abandoned`` (ended with neither, e.g. the
client left first)."""
REST_REASONS = (
    "failures",
    "status_429",
    "probe_failed",
)
"""Why a deployment started resting (``gateway_deployment_rests_total{reason}``)."""


class PoolMetrics:
    """The pool families, registered in ``registry``: ``Metrics.pools`` (one per app registry).

    Time to first token uses the gateway's TTFT buckets (``buckets.TTFT_BUCKETS``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "gateway_deployment_requests",
            "Attempts on each pool deployment, by outcome.",
            ["route", "deployment", "outcome"],
            registry=r,
        )
        self.active = Gauge(
            "gateway_deployment_active_streams",
            "Streams open now on each pool deployment (this process's).",
            ["route", "deployment"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.resting = Gauge(
            "gateway_deployment_resting",
            "1 from a rest's start until its probe succeeds (as last seen by a worker).",
            ["route", "deployment"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.rests = Counter(
            "gateway_deployment_rests",
            "Rests started, by reason.",
            ["route", "deployment", "reason"],
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_deployment_time_to_first_token_seconds",
            "Upstream request sent -> first event, per pool deployment.",
            ["route", "deployment"],
            buckets=tuple(TTFT_BUCKETS),
            registry=r,
        )

    def route(self, route: str, deployments: Iterable[str]) -> PoolRouteMetrics:
        """Bind (and so pre-create at 0) every label set of one route's deployments."""
        return PoolRouteMetrics(self, route, tuple(deployments))


class PoolRouteMetrics:
    """One route's pool series, bound once; the small functions the pool calls."""

    def __init__(self, metrics: PoolMetrics, route: str, deployments: tuple[str, ...]) -> None:
        self._requests = {
            (d, o): metrics.requests.labels(route, d, o).inc
            for d in deployments
            for o in POOL_OUTCOMES
        }
        self._active = {d: metrics.active.labels(route, d).inc for d in deployments}
        self._resting = {d: metrics.resting.labels(route, d) for d in deployments}
        self._rests = {
            (d, why): metrics.rests.labels(route, d, why)
            for d in deployments
            for why in REST_REASONS
        }
        self._ttft = {d: metrics.ttft.labels(route, d) for d in deployments}

    def request(self, deployment: str, outcome: str) -> None:
        self._requests[deployment, outcome]()

    def active(self, deployment: str, delta: int) -> None:
        self._active[deployment](delta)

    def resting(self, deployment: str, resting: bool) -> None:
        self._resting[deployment].set(1 if resting else 0)

    def rested(self, deployment: str, reason: str) -> None:
        self._rests[deployment, reason].inc()

    def ttft(self, deployment: str, seconds: float) -> None:
        self._ttft[deployment].observe(seconds)
