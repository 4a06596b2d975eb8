"""The process's pending metric updates, added to their Prometheus children in one go.

A prometheus_client update takes the child's lock and, with several workers, writes a shared
file; a 1-token stream makes about twenty of them (its outcome, duration, time to first token,
tokens, events by type, the active gauge up and down ...). Measured in place they were 9 % of
such a stream's CPU (``bench.ablate``, docs/performance.md). Streams add them to a :class:`Tally`
instead (a dict update each) and the tally adds the sums to the children:

* at most :data:`FLUSH_INTERVAL` after the first update pending (one timer, armed only while
  something is pending: an idle gateway has none);
* before each ``/metrics`` exposition of this process (``Metrics.exposition``), so a scrape sees
  every stream that ended before it in the worker that serves it;
* at shutdown (the app's cleanup).

With ``--workers N`` (``eager``) a worker flushes at the end of each stream instead, so a scrape
answered by one worker sees every stream any worker ended before it, as before the tally (the
gain is then only within a stream).

Sums are exact: a counter child gets the sum of its increments, a gauge child the net of its (an
open stream's ``+1`` and its ``-1`` cancel out when both are pending), a histogram child the
bucket counts and sum that the same ``observe`` calls would give (:class:`BatchedHistogram`).

The tally belongs to the event loop's thread: series updated from other threads (the trace
exporter's) keep prometheus_client's own calls. Written by hand: the dict is the whole mechanism,
and a library would cost the per-stream path a call layer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from prometheus_client import Histogram

FLUSH_INTERVAL = 0.1
"""Seconds a pending update may wait for the next one (the bound on a worker's lag)."""


class BatchedHistogram:
    """Pending observations of a histogram child, added to it in one go by :meth:`flush`.

    ``observe`` costs a short scan and two additions instead of prometheus_client's lock per bucket
    and per sum, which matters on the per-write path. ``flush`` adds the bucket counts and the sum
    to the child exactly as the same ``observe`` calls would have (a test compares both
    expositions). It relies on the child's ``_upper_bounds``, ``_buckets`` and ``_sum``, which
    prometheus_client has kept since 0.4; the test catches a change.
    """

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._bounds: list[float] = child._upper_bounds
        self._counts: list[int] | None = None
        """Made at the first observation: a child never observed holds no bucket array."""
        self._sum = 0.0

    def _buckets(self) -> list[int]:
        counts = self._counts
        if counts is None:
            counts = self._counts = [0] * len(self._bounds)
        return counts

    def observe(self, amount: float) -> None:
        counts = self._counts or self._buckets()
        # prometheus_client's own scan, not ``bisect_left``: compiled (gateway.native), a few
        # float comparisons in C cost less than a call into the bisect module, and the gaps and
        # overheads observed per write fall in the first buckets (-2.0 % instructions per paced
        # token, counted).
        for i, bound in enumerate(self._bounds):
            if amount <= bound:
                counts[i] += 1
                break
        self._sum += amount

    def observe_zeros(self, n: int) -> None:
        """``n`` observations of 0 (events written together: no gap between them)."""
        (self._counts or self._buckets())[0] += n

    def flush(self) -> None:
        counts = self._counts
        if counts is None or not any(counts):
            return
        buckets = self._child._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
        self._child._sum.inc(self._sum)
        self._sum = 0.0


class Incrementable(Protocol):
    """A counter or gauge child."""

    def inc(self, amount: float = 1) -> None: ...


class Tally:
    """Pending increments and observations by child; see the module docs."""

    __slots__ = ("_adds", "_dirty", "_histograms", "_timer", "eager", "interval")

    def __init__(self, interval: float = FLUSH_INTERVAL, *, eager: bool = False) -> None:
        self.interval = interval
        self.eager = eager
        """Several workers share the series: each stream's updates go out at its end
        (:meth:`stream_ended`), so no scrape of any worker misses a stream that ended."""
        self._adds: dict[Incrementable, float] = {}
        self._histograms: dict[Histogram, BatchedHistogram] = {}
        """One batch per histogram child ever observed: bounded by the config's label sets."""
        self._dirty: dict[BatchedHistogram, None] = {}
        """The batches observed since the last flush (an ordered set)."""
        self._timer: asyncio.TimerHandle | None = None

    def inc(self, child: Incrementable, amount: float = 1) -> None:
        """Add ``amount`` (negative: a gauge's decrement) to ``child`` by the next flush."""
        adds = self._adds
        adds[child] = adds.get(child, 0) + amount
        if self._timer is None:
            self._arm()

    def add(self, amounts: Mapping[Incrementable, float]) -> None:
        """:meth:`inc` for each child of ``amounts`` by its amount, in one call."""
        adds = self._adds
        for child, amount in amounts.items():
            adds[child] = adds.get(child, 0) + amount
        if self._timer is None:
            self._arm()

    def observe(self, child: Histogram, value: float) -> None:
        """Observe ``value`` on histogram ``child`` by the next flush."""
        batch = self._histograms.get(child) or self.histogram(child)
        batch.observe(value)
        self._dirty[batch] = None
        if self._timer is None:
            self._arm()

    def histogram(self, child: Histogram) -> BatchedHistogram:
        """``child``'s pending observations, to bind once and observe into on a per-write path;
        whoever does passes it to :meth:`touch` now and then (a stream's timer does)."""
        batch = self._histograms.get(child)
        if batch is None:
            batch = self._histograms[child] = BatchedHistogram(child)
        return batch

    def touch(self, *batches: BatchedHistogram) -> None:
        """``batches`` (from :meth:`histogram`) were observed into: flush them with the rest."""
        dirty = self._dirty
        for batch in batches:
            dirty[batch] = None
        if self._timer is None:
            self._arm()

    def stream_ended(self) -> None:
        """A stream's last update was made: flush now if :attr:`eager`."""
        if self.eager:
            self.flush()

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nothing would flush later
            self.flush()
            return
        self._timer = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Add everything pending to the children now."""
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        adds = self._adds
        if adds:
            self._adds = {}
            for child, amount in adds.items():
                if amount:
                    child.inc(amount)
        dirty = self._dirty
        if dirty:
            self._dirty = {}
            for batch in dirty:
                batch.flush()
