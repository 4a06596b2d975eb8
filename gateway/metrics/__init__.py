"""Every metric the gateway exports, and the small objects that record them.

Reference for operators: ``docs/operations.md`` (every series, its labels, meaning and buckets).
This package is the only place that touches a Prometheus object (a test checks it):

* :mod:`~gateway.metrics.families`: the metric families, their closed label sets and buckets, and
  :class:`RouteMetrics` (one route's children, bound once);
* :mod:`~gateway.metrics.record`: :class:`StreamRecord`, what one stream did, recorded through a
  few named calls and flushed in batches.
"""

from gateway.metrics.accounting import NO_APP, AccountingMetrics
from gateway.metrics.families import (
    ABORT_PHASES,
    ATTEMPT_RESULTS,
    CANCEL_BUCKETS,
    DURATION_BUCKETS,
    GAP_BUCKETS,
    MAX_GAP_BUCKETS,
    OUTCOMES,
    OVERHEAD_BUCKETS,
    REJECTION_CODES,
    STATUS_CLASSES,
    TOKEN_KINDS,
    TTFT_BUCKETS,
    Metrics,
    RouteMetrics,
    status_class,
)
from gateway.metrics.multiprocess import mark_process_dead, multiprocess_dir
from gateway.metrics.record import BatchedHistogram, StreamRecord, StreamRecorder, outcome_for
from gateway.metrics.resume import ResumeMetrics
from gateway.metrics.tracing import TRACE_DROP_REASONS, TraceMetrics

__all__ = [
    "ABORT_PHASES",
    "ATTEMPT_RESULTS",
    "CANCEL_BUCKETS",
    "DURATION_BUCKETS",
    "GAP_BUCKETS",
    "MAX_GAP_BUCKETS",
    "NO_APP",
    "OUTCOMES",
    "OVERHEAD_BUCKETS",
    "REJECTION_CODES",
    "STATUS_CLASSES",
    "TOKEN_KINDS",
    "TRACE_DROP_REASONS",
    "TTFT_BUCKETS",
    "AccountingMetrics",
    "BatchedHistogram",
    "Metrics",
    "ResumeMetrics",
    "RouteMetrics",
    "StreamRecord",
    "StreamRecorder",
    "TraceMetrics",
    "mark_process_dead",
    "multiprocess_dir",
    "outcome_for",
    "status_class",
]
