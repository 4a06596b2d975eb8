"""Every metric the gateway exports, and the small objects that record them.

Reference for operators: ``docs/operations.md`` (every series, its labels, meaning and buckets).
This package is the only place that touches a Prometheus object (a test checks it):

* :mod:`~gateway.metrics.families`: the metric families, their closed label sets and buckets;
* :mod:`~gateway.metrics.route`: :class:`RouteMetrics`, one route's children, bound once, and the
  per-stream updates made through them;
* :mod:`~gateway.metrics.pool`: :class:`PoolMetrics`, the per-deployment series of upstream pools;
* :mod:`~gateway.metrics.record`: :class:`StreamRecord`, what one stream did, recorded through a
  few named calls and flushed in batches;
* :mod:`~gateway.metrics.tally`: :class:`Tally`, the process's pending updates of the stream
  series, added to them in one go (within 100 ms, before each scrape, at shutdown).
"""

from gateway.metrics.accounting import NO_APP, AccountingMetrics
from gateway.metrics.buckets import (
    CANCEL_BUCKETS,
    DURATION_BUCKETS,
    GAP_BUCKETS,
    MAX_GAP_BUCKETS,
    OVERHEAD_BUCKETS,
    TTFT_BUCKETS,
)
from gateway.metrics.families import Metrics
from gateway.metrics.labels import (
    ABORT_PHASES,
    ATTEMPT_RESULTS,
    OUTCOMES,
    REJECTION_CODES,
    STATUS_CLASSES,
    TOKEN_KINDS,
    status_class,
)
from gateway.metrics.multiprocess import mark_process_dead, multiprocess_dir
from gateway.metrics.pool import POOL_OUTCOMES, REST_REASONS, PoolMetrics, PoolRouteMetrics
from gateway.metrics.record import StreamRecord, StreamRecorder, outcome_for
from gateway.metrics.resume import ResumeMetrics
from gateway.metrics.route import RouteMetrics
from gateway.metrics.tally import FLUSH_INTERVAL, BatchedHistogram, Tally
from gateway.metrics.tracing import TRACE_DROP_REASONS, TraceMetrics

__all__ = [
    "ABORT_PHASES",
    "ATTEMPT_RESULTS",
    "CANCEL_BUCKETS",
    "DURATION_BUCKETS",
    "FLUSH_INTERVAL",
    "GAP_BUCKETS",
    "MAX_GAP_BUCKETS",
    "NO_APP",
    "OUTCOMES",
    "OVERHEAD_BUCKETS",
    "POOL_OUTCOMES",
    "REJECTION_CODES",
    "REST_REASONS",
    "STATUS_CLASSES",
    "TOKEN_KINDS",
    "TRACE_DROP_REASONS",
    "TTFT_BUCKETS",
    "AccountingMetrics",
    "BatchedHistogram",
    "Metrics",
    "PoolMetrics",
    "PoolRouteMetrics",
    "ResumeMetrics",
    "RouteMetrics",
    "StreamRecord",
    "StreamRecorder",
    "Tally",
    "TraceMetrics",
    "mark_process_dead",
    "multiprocess_dir",
    "outcome_for",
    "status_class",
]
