"""Every metric the gateway exports, and the small objects that record them.

Labels are bounded by the configuration only (route names, provider names, app key names,
outcomes, event types, phases), never by request data. Every label set is pre-created at 0 when
the app starts (:func:`Metrics.precreate`) so dashboards and ``rate()`` see series from the first
scrape. The hot path never looks labels up per event: :class:`RouteMetrics` binds each route's
children once.

Bucket choices (seconds) and why:

* TTFT and upstream headers: 25 ms to 10 min. Reasoning models can think for minutes before the
  first token; a histogram that stops at 10 s would put them all in ``+Inf``.
* inter-token gap: 1 ms to 30 s. Healthy streams sit at 5-60 ms per token; the high buckets catch
  stalls.
* max gap per stream: 10 ms to 5 min: the worst stall a user saw in each stream.
* stream duration: 100 ms to 1 h (the default ``total`` timeout is 30 min).
* gateway overhead per event: 2 µs to 10 ms: the gateway's own work per event is microseconds; a
  millisecond here means something is wrong (GC pauses, a blocked loop).
* upstream cancel: 50 µs to 1 s: the target is well under 100 ms.

Multi-process: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``gateway --workers N`` sets it), each
worker writes its values to files there and ``/metrics`` aggregates all workers
(prometheus_client multiprocess mode); gauges then sum live workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.events import EVENT_TYPES

OUTCOMES = (
    "completed",
    "client_abort",
    "upstream_error",
    "upstream_timeout",
    "upstream_truncated",
    "limit_exceeded",
    "rejected",
    "shutdown",
    "internal",
)
"""Closed set of stream outcomes (``gateway_requests_total{outcome}``)."""

ABORT_PHASES = ("before_upstream_headers", "before_first_token", "mid_stream")
TOKEN_KINDS = ("input", "output", "reasoning", "cached_input")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")
ATTEMPT_RESULTS = ("ok", "connect_error", "status_error", "timeout", "early_error")

TTFT_BUCKETS = (
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2,
    3,
    5,
    8,
    13,
    20,
    30,
    45,
    60,
    90,
    120,
    180,
    300,
    600,
)
GAP_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
MAX_GAP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
OVERHEAD_BUCKETS = (2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2)
CANCEL_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The gateway's metric families, registered in their own registry (one per app)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gateway_requests", "Streams by final outcome.", ["route", "outcome"], registry=r
        )
        self.app_requests = Counter(
            "gateway_app_requests",
            "Streams by app key name and final outcome.",
            ["app", "route", "outcome"],
            registry=r,
        )
        self.active = Gauge(
            "gateway_active_streams",
            "Streams open now.",
            ["route"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_headers = Histogram(
            "gateway_upstream_headers_seconds",
            "Request received -> upstream response headers.",
            ["route"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Request received -> first content event (text, reasoning or tool call) written.",
            ["route"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.inter_token = Histogram(
            "gateway_inter_token_seconds",
            "Each gap between content events written to the client.",
            ["route"],
            buckets=GAP_BUCKETS,
            registry=r,
        )
        self.max_gap = Histogram(
            "gateway_stream_max_gap_seconds",
            "The longest gap between content events, one observation per stream.",
            ["route"],
            buckets=MAX_GAP_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "gateway_stream_duration_seconds",
            "Request received -> stream ended.",
            ["route", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time inside the gateway per upstream read: bytes read -> client bytes written.",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "gateway_events", "Token-protocol events sent.", ["route", "type"], registry=r
        )
        self.tokens = Counter(
            "gateway_tokens", "Tokens reported by providers.", ["route", "kind"], registry=r
        )
        self.upstream_responses = Counter(
            "gateway_upstream_responses",
            "Upstream answers by status class ('error' when none came).",
            ["route", "status_class"],
            registry=r,
        )
        self.upstream_attempts = Counter(
            "gateway_upstream_attempts",
            "Upstream attempts (primary and fallbacks) by result.",
            ["route", "upstream", "result"],
            registry=r,
        )
        self.aborts = Counter(
            "gateway_client_aborts",
            "Clients that went away before the stream ended, by phase.",
            ["route", "phase"],
            registry=r,
        )
        self.cancel = Histogram(
            "gateway_upstream_cancel_seconds",
            "Client abort -> upstream connection closed.",
            ["route"],
            buckets=CANCEL_BUCKETS,
            registry=r,
        )
        self.tokens_after_abort = Counter(
            "gateway_tokens_after_abort",
            "Output tokens generated after the client left (drain mode).",
            ["route"],
            registry=r,
        )
        self.heartbeats = Counter(
            "gateway_heartbeats", "Heartbeats sent during silence.", ["route"], registry=r
        )
        self.slow_clients = Counter(
            "gateway_slow_client_disconnects",
            "Streams cut because the client stopped reading.",
            ["route"],
            registry=r,
        )
        self.limit_backend_errors = Counter(
            "gateway_limit_backend_errors",
            "Failures of the shared limits backend (fail open or closed per config).",
            registry=r,
        )
        self.rejections = Counter(
            "gateway_rejections",
            "Requests refused before streaming, by error code.",
            ["route", "code"],
            registry=r,
        )

    def precreate(
        self,
        routes: Iterable[str],
        upstreams: dict[str, Iterable[str]] | None = None,
        apps: Iterable[str] = (),
    ) -> None:
        """Create every bounded label set at 0 so series exist before traffic."""
        apps = tuple(apps)
        for route in routes:
            for outcome in OUTCOMES:
                self.requests.labels(route, outcome)
                self.duration.labels(route, outcome)
                for app in apps:
                    self.app_requests.labels(app, route, outcome)
            self.active.labels(route)
            for h in (self.upstream_headers, self.ttft, self.inter_token, self.max_gap):
                h.labels(route)
            self.overhead.labels(route)
            self.cancel.labels(route)
            self.tokens_after_abort.labels(route)
            self.heartbeats.labels(route)
            self.slow_clients.labels(route)
            for kind in EVENT_TYPES:
                self.events.labels(route, kind)
            for kind in TOKEN_KINDS:
                self.tokens.labels(route, kind)
            for cls in STATUS_CLASSES:
                self.upstream_responses.labels(route, cls)
            for phase in ABORT_PHASES:
                self.aborts.labels(route, phase)
            for upstream in (upstreams or {}).get(route, ()):
                for result in ATTEMPT_RESULTS:
                    self.upstream_attempts.labels(route, upstream, result)

    def route(self, name: str) -> RouteMetrics:
        return RouteMetrics(self, name)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type (aggregated across workers if multiprocess)."""
        directory = multiprocess_dir()
        if directory:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RouteMetrics:
    """One route's children, bound once (no label lookups on the per-event path)."""

    __slots__ = (
        "active",
        "cancel",
        "events",
        "heartbeats",
        "inter_token",
        "max_gap",
        "metrics",
        "overhead",
        "route",
        "ttft",
        "upstream_headers",
    )

    def __init__(self, metrics: Metrics, route: str) -> None:
        self.metrics = metrics
        self.route = route
        self.active = metrics.active.labels(route)
        self.ttft = metrics.ttft.labels(route)
        self.inter_token = metrics.inter_token.labels(route)
        self.max_gap = metrics.max_gap.labels(route)
        self.overhead = metrics.overhead.labels(route)
        self.upstream_headers = metrics.upstream_headers.labels(route)
        self.cancel = metrics.cancel.labels(route)
        self.heartbeats = metrics.heartbeats.labels(route)
        self.events = {kind: metrics.events.labels(route, kind) for kind in EVENT_TYPES}

    def finish(self, outcome: str, duration: float, app: str | None) -> None:
        m = self.metrics
        m.requests.labels(self.route, outcome).inc()
        m.duration.labels(self.route, outcome).observe(duration)
        if app is not None:
            m.app_requests.labels(app, self.route, outcome).inc()

    def tokens(self, usage: dict[str, int]) -> None:
        for kind in ("input", "output", "reasoning", "cached_input"):
            value = usage.get(f"{kind}_tokens")
            if value:
                self.metrics.tokens.labels(self.route, kind).inc(value)

    def upstream_status(self, status: int | None) -> None:
        cls = "error" if status is None else f"{min(status // 100, 5)}xx"
        self.metrics.upstream_responses.labels(self.route, cls).inc()

    def abort(self, phase: str) -> None:
        self.metrics.aborts.labels(self.route, phase).inc()

    def rejected(self, code: str, app: str | None) -> None:
        self.metrics.rejections.labels(self.route, code).inc()
        self.finish("rejected", 0.0, app)
