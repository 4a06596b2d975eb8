"""One route's metric children, bound once, and the per-stream updates made through them.

The families themselves (names, label sets, buckets) are :mod:`gateway.metrics.families`; a
:class:`RouteMetrics` is made per route when the app starts (``Metrics.route``) and held by the
gateway's state by route name, so the per-stream path never looks a label up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter

from gateway.events import EVENT_TYPES
from gateway.metrics.labels import (
    ABORT_PHASES,
    OUTCOMES,
    STATUS_CLASSES,
    TOKEN_KINDS,
    status_class,
)
from gateway.metrics.tally import BatchedHistogram, Incrementable

if TYPE_CHECKING:
    from gateway.metrics.families import Metrics


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
        usage: Mapping[str, Any],
        outcome: str,
        duration: float | None,
        app: str | None,
        max_gap: float | None,
    ) -> None:
        """A stream's last updates, with one tally call for all its counts: the active gauge
        down, the ``events`` counts by type still pending (then cleared), the usage's token
        counts (as :meth:`tokens`), the outcome and the app's request (as :meth:`finish`), the
        duration (``None``: not timed, a refusal) and, for a stream with content, its largest
        gap ``max_gap``."""
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
        if duration is not None:
            tally.observe(self._duration[outcome], duration)
        if max_gap is not None:
            tally.observe(self.max_gap, max_gap)
        tally.stream_ended()

    def _app_child(self, app: str, outcome: str) -> Counter:
        child = self._app_requests.get((app, outcome))
        if child is None:
            child = self.metrics.app_requests.labels(app, self.route, outcome)
        return child

    def tokens(self, usage: Mapping[str, Any]) -> None:
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

    def drained(self, usage: Mapping[str, Any], after_abort: int) -> None:
        """Usage read by a drain after the client left, and its estimated share after the abort."""
        self.tokens(usage)
        if after_abort:
            self.tally.inc(self.tokens_after_abort, after_abort)
        self.tally.stream_ended()

    def rejection(self, code: str) -> None:
        """Count one refusal by its error ``code`` (a code of the error tree: a bounded set)."""
        self.tally.inc(self.metrics.rejections.labels(self.route, code))

    def rejected(self, code: str, app: str | None) -> None:
        """A request refused before streaming: counted by code and as outcome ``rejected``."""
        self.rejection(code)
        self.finish("rejected", None, app)
