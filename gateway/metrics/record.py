"""One stream's record: its timings and counts, kept locally and flushed to the route's series.

The stream's I/O edge reports what happens through a few named calls (:meth:`StreamRecord.started`,
:meth:`~StreamRecord.upstream_answered`, :meth:`~StreamRecord.wrote`, :meth:`~StreamRecord.aborted`,
:meth:`~StreamRecord.finished` ...); nothing outside this package touches a Prometheus object. The
record keeps what it saw (time to first token, usage, outcome, attempts) so the log line and a
trace can be built from it at the end, with no extra work per event.

Nothing here takes a prometheus_client lock: per event, counts are a dict update; per write,
the gap and overhead histograms are the route's pending
:class:`~gateway.metrics.tally.BatchedHistogram`; per stream, every update goes through the
process's :class:`~gateway.metrics.tally.Tally`, which adds them to the series in one go (within
100 ms, before each scrape, at shutdown). The stream's timer flushes its counts at least every
``server.write_timeout / 2``, and its end does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.events import CONTENT_TYPES, USAGE
from gateway.metrics.route import RouteMetrics
from gateway.values import mypyc_attr

if TYPE_CHECKING:
    from gateway.events import Event

_OUTCOME_BY_CODE = {
    "upstream_timeout": "upstream_timeout",
    "upstream_truncated": "upstream_truncated",
    "shutdown": "shutdown",
    "limit_exceeded": "limit_exceeded",
    "internal": "internal",
    "stopped": "client_abort",
}


def outcome_for(code: str | None, *, upstream: bool = True) -> str:
    """The outcome (one of ``OUTCOMES``) of a stream that ended with error ``code``.

    ``None`` is a completed stream. ``stopped`` (a resumable stream ended by its client's
    ``DELETE``) is the client's doing, as a Stop button's abort is: ``client_abort``. An unknown
    code is the upstream's error when it came from the upstream side (``upstream``), else a
    rejection (refused before streaming, e.g. a pool with no deployment free).
    """
    if code is None:
        return "completed"
    return _OUTCOME_BY_CODE.get(code, "upstream_error" if upstream else "rejected")


class StreamRecorder:
    """The batched part of a record: per-event counts and per-write histograms.

    Event counts are a dict per stream, added to the route's series by :meth:`flush`; the gap and
    overhead observations go straight into the route's pending batches (the tally's), which
    :meth:`flush` makes sure get flushed. So ``gateway_events_total``,
    ``gateway_inter_token_seconds`` and ``gateway_overhead_seconds`` lag a long stream by up to
    the flush interval.
    """

    __slots__ = ("_route", "counts", "inter_token", "overhead")

    def __init__(self, route: RouteMetrics) -> None:
        self._route = route
        self.counts: dict[str, int] = {}
        self.inter_token = route.inter_token_batch
        self.overhead = route.overhead_batch

    def flush(self) -> None:
        route = self._route
        counts = self.counts
        if counts:
            events = route.events
            for kind, n in counts.items():
                route.inc(events[kind], n)
            counts.clear()
        route.tally.touch(self.inter_token, self.overhead)


@mypyc_attr(allow_interpreted_subclasses=True)  # subclassed by modules not compiled
class StreamRecord:
    """What one stream did, recorded as it happens; see the module docs.

    Times are ``time.monotonic()`` seconds. ``t0`` is when the request was received.
    """

    __slots__ = (
        "_batch",
        "_headers_timed",
        "abort_phase",
        "app",
        "attempts",
        "content_writes",
        "ended",
        "error_code",
        "events_written",
        "last_content",
        "max_gap",
        "metrics",
        "outcome",
        "t0",
        "t_first_content",
        "t_headers",
        "usage",
    )

    def __init__(self, metrics: RouteMetrics, t0: float, app: str | None) -> None:
        self.metrics = metrics
        self._batch = StreamRecorder(metrics)
        self.t0 = t0
        self.app = app
        self.t_headers: float | None = None
        self._headers_timed = False
        """``gateway_upstream_headers_seconds`` has the serving attempt's observation."""
        self.t_first_content: float | None = None
        self.last_content = 0.0
        self.max_gap = 0.0
        self.content_writes = 0
        """Writes carrying content: drain mode's tokens-after-abort share."""
        self.events_written = 0
        self.usage: dict[str, Any] = {}
        """The usage events' data merged: token counts, and a priced stream's cost (a float)."""
        self.ended = False
        """A terminal event was written."""
        self.outcome = "internal"
        self.error_code: str | None = None
        self.abort_phase: str | None = None
        self.attempts: list[tuple[str, str]] = []
        """``(upstream label, result)`` per upstream attempt, in order."""

    # -- upstream ----------------------------------------------------------------------------

    def started(self) -> None:
        """The stream is open (``gateway_active_streams``)."""
        self.metrics.inc(self.metrics.active)

    def upstream_answered(self, status: int, now: float) -> None:
        """An upstream answered 2xx at ``now``; its headers are timed once it serves
        (:meth:`upstream_chosen`), not when a fallback discards it (:meth:`upstream_retry`)."""
        self.metrics.upstream_status(status)
        self.t_headers = now

    def upstream_chosen(self) -> None:
        """The stream settled on the upstream that answered last (or ended with it): observe
        request received -> its headers, once per stream (``gateway_upstream_headers_seconds``:
        one observation per request that got a 2xx, whatever the attempts before it)."""
        t = self.t_headers
        if t is not None and not self._headers_timed:
            self._headers_timed = True
            self.metrics.observe(self.metrics.upstream_headers, t - self.t0)

    def upstream_refused(self, status: int | None) -> None:
        """An upstream answered non-2xx (``status``) or not at all (``None``)."""
        self.metrics.upstream_status(status)

    def attempt(self, upstream: str, result: str) -> None:
        """The result of one upstream attempt (one of ``ATTEMPT_RESULTS``)."""
        self.attempts.append((upstream, result))
        self.metrics.attempt(upstream, result)

    def upstream_retry(self) -> None:
        """A failed attempt was discarded before the next one: its answer time no longer counts."""
        self.t_headers = None

    # -- the client side ---------------------------------------------------------------------

    def wrote(self, events: list[Event], now: float) -> None:
        """``events`` were written to the client at ``now`` (read from the upstream then).

        Counts each event by type, keeps the usage, and times content: time to first token at the
        first content event, then one gap per further content event (``N`` content events give
        ``N - 1`` gaps, whatever the read sizes; events written together have gaps of 0).
        """
        counts = self._batch.counts
        content = 0
        for event in events:
            kind = event.type
            counts[kind] = counts.get(kind, 0) + 1
            if kind in CONTENT_TYPES:
                content += 1
            elif kind == USAGE:
                self.usage.update(event.data)
        self.events_written += len(events)
        if events and events[-1].is_terminal:
            self.ended = True
        if not content:
            return
        if self.t_first_content is None:
            self.t_first_content = now
            self.metrics.observe(self.metrics.ttft, now - self.t0)
        else:
            gap = now - self.last_content
            self._batch.inter_token.observe(gap)
            if gap > self.max_gap:
                self.max_gap = gap
        if content > 1:
            self._batch.inter_token.observe_zeros(content - 1)
        self.last_content = now
        self.content_writes += 1

    def overhead(self, seconds: float) -> None:
        """The gateway's own time for one upstream read (bytes read -> client bytes written)."""
        self._batch.overhead.observe(seconds)

    def heartbeat(self) -> None:
        self.metrics.inc(self.metrics.heartbeats)

    def slow_client(self) -> None:
        """The client stopped reading and was cut."""
        self.metrics.slow_client()
        self.outcome = "limit_exceeded"
        self.error_code = "slow_client"

    def aborted(self, upstream_open: bool) -> None:
        """The client went away; the phase follows from what the stream had done. Counted
        once per stream (a client may leave while its ``DELETE``'s terminal event goes out)."""
        if self.abort_phase is not None:
            return
        if not upstream_open:
            phase = "before_upstream_headers"
        elif self.t_first_content is None:
            phase = "before_first_token"
        else:
            phase = "mid_stream"
        self.abort_phase = phase
        self.outcome = "client_abort"
        self.metrics.abort(phase)

    def cancelled(self, seconds: float) -> None:
        """Client abort seen -> upstream connection closed, in ``seconds``."""
        self.metrics.observe(self.metrics.cancel, seconds)

    # -- the end -----------------------------------------------------------------------------

    def failed(self, code: str, *, upstream: bool = True) -> None:
        """The stream ends with error ``code`` (see :func:`outcome_for`). A ``client_abort`` (a
        ``DELETE`` stopped it) is counted by phase as a client that left then."""
        self.error_code = code
        outcome = outcome_for(code, upstream=upstream)
        if outcome == "client_abort" and self.abort_phase is None:
            self.aborted(upstream_open=self.t_headers is not None)
        self.outcome = outcome

    def completed(self) -> None:
        self.outcome = "completed"

    def flush(self) -> None:
        """Add the batched observations to the route's series (the stream's timer calls this)."""
        self._batch.flush()

    def finished(self, now: float) -> float:
        """Close the record: flush, count the outcome, add the usage. Returns the duration.

        A stream refused before it streamed (outcome ``rejected``: a pool with no deployment
        free) is counted as the admission's refusals are: by code in
        ``gateway_rejections_total``, and not timed (no stream ran).
        """
        duration = now - self.t0
        self.upstream_chosen()  # an attempt that answered and then failed, or was left held
        outcome = self.outcome
        rejected = outcome == "rejected"
        if rejected:
            self.metrics.rejection(self.error_code or "internal")
        self.metrics.stream_finished(
            self._batch.counts,
            self.usage,
            outcome,
            None if rejected else duration,
            self.app,
            None if self.t_first_content is None else self.max_gap,
        )
        return duration
