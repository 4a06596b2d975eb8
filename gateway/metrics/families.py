"""The gateway's metric families, their closed label sets and buckets, and per-route children.

Reference for operators: ``docs/operations.md`` (every series, its labels, meaning and buckets).

Labels are bounded by the configuration only (route names, provider names, app key names) and by
closed sets (outcomes, abort phases, token kinds, status classes, event types, error codes:
:mod:`~gateway.metrics.labels`), never by request data. Every label set is pre-created at 0 when
the app starts (:func:`Metrics.precreate`) so dashboards and ``rate()`` see series from the
first scrape. The hot path never looks labels up per event: a route's
:class:`~gateway.metrics.route.RouteMetrics` binds its children once, and the per-stream calls
(``finish``, ``stream_finished`` ...) index small dicts of bound children.

Bucket choices (seconds) and why:

* TTFT and upstream headers: 25 ms to 10 min. Reasoning models can think for minutes before the
  first token; a histogram that stops at 10 s would put them all in ``+Inf``.
* inter-token gap: 1 ms to 30 s. Healthy streams sit at 5-60 ms per token; the high buckets catch
  stalls.
* max gap per stream: 10 ms to 5 min: the worst stall a user saw in each stream.
* stream duration: 100 ms to 1 h (the default ``total`` timeout is 30 min).
* gateway overhead per upstream read: 2 µs to 10 ms: the gateway's own work per read is tens of
  microseconds; a millisecond here means something is wrong (GC pauses, a blocked loop, a client
  that does not read).
* upstream cancel: 50 µs to 1 s: the target is well under 100 ms.

The ``*_created`` samples of prometheus_client are switched off: they double the series count,
the multiprocess view does not have them, and ``rate()`` does not need them.

Multi-process: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``gateway --workers N`` sets it), each
worker writes its values to files there and ``/metrics`` aggregates all workers
(prometheus_client multiprocess mode); gauges then sum live workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.metrics.accounting import AccountingMetrics
from gateway.metrics.buckets import (
    CANCEL_BUCKETS,
    DURATION_BUCKETS,
    GAP_BUCKETS,
    MAX_GAP_BUCKETS,
    OVERHEAD_BUCKETS,
    TTFT_BUCKETS,
)
from gateway.metrics.frontdoor import FrontdoorMetrics
from gateway.metrics.labels import (
    ATTEMPT_RESULTS,
    REJECTION_CODES,
)
from gateway.metrics.multiprocess import multiprocess_dir
from gateway.metrics.pool import PoolMetrics
from gateway.metrics.route import RouteMetrics
from gateway.metrics.tally import Tally

disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """The gateway's metric families, registered in their own registry (one per app)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.tally = Tally(eager=bool(multiprocess_dir()))
        """The streams' updates of the series below, pending until its next flush."""
        self.before_exposition: list[Callable[[], None]] = []
        """Called before each ``/metrics`` (gauges read from live state, e.g. the resume buffer)."""
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
            "Each gap between writes of content events to the client.",
            ["route"],
            buckets=GAP_BUCKETS,
            registry=r,
        )
        self.max_gap = Histogram(
            "gateway_stream_max_gap_seconds",
            "The longest gap between content writes, one observation per stream.",
            ["route"],
            buckets=MAX_GAP_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "gateway_stream_duration_seconds",
            "Request received -> stream ended (rejected requests are not timed).",
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
            "Client abort seen -> upstream connection closed.",
            ["route"],
            buckets=CANCEL_BUCKETS,
            registry=r,
        )
        self.tokens_after_abort = Counter(
            "gateway_tokens_after_abort",
            "Output tokens generated after the client left (drain mode; estimated share).",
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
        self.accounting = AccountingMetrics(r)
        self.pools = PoolMetrics(r)  # bound per pooled route: pools.route(...)

        self.frontdoor = FrontdoorMetrics(r, self.tally)
        self._apps: tuple[str, ...] = ()
        """The app key names of the last :meth:`precreate` (what :meth:`route` binds)."""

    def precreate(
        self,
        routes: Iterable[str],
        upstreams: Mapping[str, Iterable[str]] | None = None,
        apps: Iterable[str] = (),
    ) -> None:
        """Create every bounded label set at 0 so series exist before traffic."""
        apps, routes = tuple(apps), tuple(routes)
        self._apps = apps
        self.accounting.precreate(routes, apps)
        self.frontdoor.precreate(routes)
        for route in routes:
            RouteMetrics(self, route, apps)  # binds (and so creates) the per-route children
            self.slow_clients.labels(route)
            for code in REJECTION_CODES:
                self.rejections.labels(route, code)
            for upstream in (upstreams or {}).get(route, ()):
                for result in ATTEMPT_RESULTS:
                    self.upstream_attempts.labels(route, upstream, result)

    def route(self, name: str, apps: Iterable[str] | None = None) -> RouteMetrics:
        """Route ``name``'s children, bound once, with those of ``apps`` (default: the app key
        names of the last :meth:`precreate`, so a configured app's count needs no lookup)."""
        return RouteMetrics(self, name, self._apps if apps is None else apps)

    def limit_backend_error(self) -> None:
        """The shared limits backend failed once."""
        self.limit_backend_errors.inc()

    def flush(self) -> None:
        """Add every pending stream update to the series now (the tally flushes by itself at
        most :data:`~gateway.metrics.tally.FLUSH_INTERVAL` after an update; the app's shutdown
        calls this, :meth:`exposition` does the same)."""
        self.tally.flush()

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type (aggregated across workers if multiprocess)."""
        for refresh in self.before_exposition:
            refresh()
        self.flush()
        directory = multiprocess_dir()
        if directory:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
