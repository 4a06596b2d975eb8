"""The gateway's metric families, their closed label sets and buckets, and per-route children.

Reference for operators: ``docs/operations.md`` (every series, its labels, meaning and buckets).

Labels are bounded by the configuration only (route names, provider names, app key names) and by
closed sets (outcomes, abort phases, token kinds, status classes, event types, error codes:
:mod:`~gateway.metrics.labels`), never by request data. Every label set is pre-created at 0 when
the app starts (:func:`Metrics.precreate`) so dashboards and ``rate()`` see series from the
first scrape. The hot path never looks labels up per event: :class:`RouteMetrics` binds each
route's children once, and the per-stream calls (:meth:`RouteMetrics.finish`, ...) index small
dicts of bound children.

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

from gateway.events import EVENT_TYPES
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
    ABORT_PHASES,
    ATTEMPT_RESULTS,
    OUTCOMES,
    REJECTION_CODES,
    STATUS_CLASSES,
    TOKEN_KINDS,
    status_class,
)
from gateway.metrics.multiprocess import multiprocess_dir
from gateway.metrics.pool import PoolMetrics
from gateway.metrics.tally import BatchedHistogram, Incrementable, Tally

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

    def precreate(
        self,
        routes: Iterable[str],
        upstreams: Mapping[str, Iterable[str]] | None = None,
        apps: Iterable[str] = (),
    ) -> None:
        """Create every bounded label set at 0 so series exist before traffic."""
        apps, routes = tuple(apps), tuple(routes)
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

    def route(self, name: str, apps: Iterable[str] = ()) -> RouteMetrics:
        return RouteMetrics(self, name, apps)

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


class RouteMetrics:
    """One route's children, bound once (no label lookups on the per-event path).

    Per event and per write, streams record into their own
    :class:`~gateway.metrics.record.StreamRecord` (no locks), flushed here every few seconds and
    at the end. Per stream: the methods below, which pick a bound child from a small dict and add
    to it through the process's :class:`~gateway.metrics.tally.Tally` (no lock either). An
    ``app`` that was not configured (a feature passing an unexpected name) falls back to a label
    lookup.
    """

    __slots__ = (
        "_aborts",
        "_app_requests",
        "_attempts",
        "_duration",
        "_requests",
        "_statuses",
        "_tokens",
        "active",
        "cancel",
        "events",
        "heartbeats",
        "inc",
        "inter_token",
        "inter_token_batch",
        "max_gap",
        "metrics",
        "observe",
        "overhead",
        "overhead_batch",
        "route",
        "tally",
        "tokens_after_abort",
        "ttft",
        "upstream_headers",
    )

    def __init__(self, metrics: Metrics, route: str, apps: Iterable[str] = ()) -> None:
        self.metrics = metrics
        self.tally = tally = metrics.tally
        self.inc = tally.inc
        """``inc(child, amount)``: add ``amount`` to one of this route's children by the tally's
        next flush (the tally's own method: no call layer per update)."""
        self.observe = tally.observe
        """``observe(child, value)``: observe ``value`` on one of this route's histogram
        children by the tally's next flush."""
        self._attempts: dict[tuple[str, str], Counter] = {}
        self.route = route
        self.active = metrics.active.labels(route)
        self.ttft = metrics.ttft.labels(route)
        self.inter_token = metrics.inter_token.labels(route)
        self.max_gap = metrics.max_gap.labels(route)
        self.overhead = metrics.overhead.labels(route)
        self.upstream_headers = metrics.upstream_headers.labels(route)
        self.cancel = metrics.cancel.labels(route)
        self.heartbeats = metrics.heartbeats.labels(route)
        self.tokens_after_abort = metrics.tokens_after_abort.labels(route)
        self.events = {kind: metrics.events.labels(route, kind) for kind in EVENT_TYPES}
        self._requests = {o: metrics.requests.labels(route, o) for o in OUTCOMES}
        self._duration = {o: metrics.duration.labels(route, o) for o in OUTCOMES}
        self._app_requests = {
            (app, o): metrics.app_requests.labels(app, route, o) for app in apps for o in OUTCOMES
        }
        self._tokens = {f"{k}_tokens": metrics.tokens.labels(route, k) for k in TOKEN_KINDS}
        """The token counters by the usage key they add up (``input_tokens`` ...)."""
        self._statuses = {
            cls: metrics.upstream_responses.labels(route, cls) for cls in STATUS_CLASSES
        }
        self._aborts = {phase: metrics.aborts.labels(route, phase) for phase in ABORT_PHASES}
        self.inter_token_batch: BatchedHistogram = tally.histogram(self.inter_token)
        self.overhead_batch: BatchedHistogram = tally.histogram(self.overhead)
        """The per-write histograms' pending observations (streams add to them directly)."""

    def finish(self, outcome: str, duration: float | None, app: str | None) -> None:
        """Count a stream's outcome (one of :data:`OUTCOMES`); time it unless ``duration`` is
        None."""
        tally = self.tally
        tally.inc(self._requests[outcome])
        if duration is not None:
            tally.observe(self._duration[outcome], duration)
        if app is not None:
            tally.inc(self._app_child(app, outcome))
        tally.stream_ended()

    def stream_finished(
        self,
        events: dict[str, int],
        usage: Mapping[str, int],
        outcome: str,
        duration: float,
        app: str | None,
        max_gap: float | None,
    ) -> None:
        """A stream's last updates, with one tally call for all its counts: the active gauge
        down, the ``events`` counts by type still pending (then cleared), the usage's token
        counts (as :meth:`tokens`), the outcome and the app's request (as :meth:`finish`), the
        duration and, for a stream with content, its largest gap ``max_gap``."""
        adds: dict[Incrementable, float] = {self.active: -1, self._requests[outcome]: 1}
        if events:
            children = self.events
            for kind, n in events.items():
                adds[children[kind]] = n
            events.clear()
        tokens = self._tokens
        for key, value in usage.items():
            child = tokens.get(key)
            if child is not None and value.__class__ is int and value > 0:
                adds[child] = value
        if app is not None:
            adds[self._app_child(app, outcome)] = 1
        tally = self.tally
        tally.add(adds)
        tally.touch(self.inter_token_batch, self.overhead_batch)
        tally.observe(self._duration[outcome], duration)
        if max_gap is not None:
            tally.observe(self.max_gap, max_gap)
        tally.stream_ended()

    def _app_child(self, app: str, outcome: str) -> Counter:
        child = self._app_requests.get((app, outcome))
        if child is None:
            child = self.metrics.app_requests.labels(app, self.route, outcome)
        return child

    def tokens(self, usage: Mapping[str, int]) -> None:
        """Add a stream's provider-reported usage (``<kind>_tokens`` keys) to the token counters."""
        for key, child in self._tokens.items():
            value = usage.get(key)
            if isinstance(value, int) and value > 0:
                self.tally.inc(child, value)

    def upstream_status(self, status: int | None) -> None:
        self.tally.inc(self._statuses[status_class(status)])

    def abort(self, phase: str) -> None:
        self.tally.inc(self._aborts[phase])

    def attempt(self, upstream: str, result: str) -> None:
        """One upstream attempt's result (``ATTEMPT_RESULTS``) on target ``upstream``."""
        child = self._attempts.get((upstream, result))
        if child is None:  # bound on first use: the targets are the config's, a bounded set
            child = self.metrics.upstream_attempts.labels(self.route, upstream, result)
            self._attempts[upstream, result] = child
        self.tally.inc(child)

    def slow_client(self) -> None:
        self.tally.inc(self.metrics.slow_clients.labels(self.route))

    def drained(self, usage: Mapping[str, int], after_abort: int) -> None:
        """Usage read by a drain after the client left, and its estimated share after the abort."""
        self.tokens(usage)
        if after_abort:
            self.tally.inc(self.tokens_after_abort, after_abort)
        self.tally.stream_ended()

    def rejected(self, code: str, app: str | None) -> None:
        """A request refused before streaming: counted by code and as outcome ``rejected``."""
        self.tally.inc(self.metrics.rejections.labels(self.route, code))
        self.finish("rejected", None, app)
