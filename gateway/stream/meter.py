"""A stream's cost and settlement (contract section 13): priced once, settled once.

:meth:`Meter.hook` gives each upstream attempt a :data:`~gateway.pipeline.UsageHook`: when the
attempt's ``usage`` event passes its pipeline (one per stream; several are merged), the served
model's price (``Pricer``, ``pricing:`` overrides first) turns it into ``usage.cost_usd``.
Nothing happens per content event: the cost is a few multiplications per stream.

:meth:`Meter.settle` ends the stream's accounting, once: the admission's holds are released with
the stream's usage (budgets settle its ``cost_usd``, rate limits its tokens) and the cost is
added to ``gateway_cost_usd_total{route,app}``. The session calls it when it finishes, or, when
the upstream is drained after the client left, the drain calls it with the whole usage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from gateway import events as ev
from gateway.admission import Admission
from gateway.events import Event
from gateway.metrics import AccountingMetrics
from gateway.pipeline import UsageHook
from gateway.pricing import Pricer, cost, cost_of, counts

if TYPE_CHECKING:
    from gateway.stream.attempts import Attempt


REFUSED = frozenset({"status_error", "connect_error"})
"""Attempt results (``StreamRecord.attempt``) where no upstream took the request: it answered
non-2xx, or was never reached. Providers bill neither. A result alone does not prove it: an
attempt still held back when the client left has none yet, and a failure after a 2xx answer
(a cut before any content) is also counted ``connect_error``; so the meter also notes whether
any upstream answered 2xx (:meth:`Meter.hook` runs exactly then)."""

NOTHING_USED: Mapping[str, Any] = MappingProxyType(
    {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
)
"""The usage a stream settles with when every attempt was refused."""


class Meter:
    """One stream's pricing and settlement (see the module docs)."""

    __slots__ = (
        "_accounting",
        "_admission",
        "_pricer",
        "_route",
        "answered",
        "deferred",
        "settled",
    )

    def __init__(
        self,
        pricer: Pricer | None,
        accounting: AccountingMetrics,
        admission: Admission,
        route: str,
    ) -> None:
        self._pricer = pricer
        self._accounting = accounting
        self._admission = admission
        self._route = route
        self.settled = False
        self.answered = False
        """An upstream answered 2xx: it took the request and may bill it."""
        self.deferred = False
        """A drain settles (:meth:`hand_to_drain`), not the session's end."""

    def hook(self, attempt: Attempt) -> UsageHook | None:
        """The usage hook of ``attempt``'s pipeline: ``None`` without a pricer, or when the
        model it calls has no price (looked up once, here, at the price in force when the attempt
        starts; the pricer warns once per model), so an unpriced stream's usage passes with no
        pricing work at all. It is asked for when the attempt's upstream answered 2xx, so it
        also notes that an upstream took the request (:attr:`answered`)."""
        self.answered = True
        pricer = self._pricer
        if pricer is None:
            return None
        provider = attempt.target.provider
        model = attempt.model  # what the attempt calls (``build_attempts``)
        price = pricer.price(provider, model)  # the price when the attempt started
        if price is None:
            if attempt.adapter.needs_upstream:  # a built-in source (the demo) costs nothing
                pricer.warn_unknown(provider, model)  # to warn about
            return None
        merged: dict[str, Any] = {}

        def priced(event: Event) -> Event:
            merged.update(event.data)
            c = counts(merged)
            if c is None:  # no input or output count yet
                return event
            return Event(ev.USAGE, {**event.data, "cost_usd": cost(price, c)})

        return priced

    def hand_to_drain(self) -> Callable[[Mapping[str, Any]], None]:
        """A drain takes the upstream: the holds outlive the request's task, and the drain
        calls the returned :meth:`settle` with the whole usage when it ends."""
        self.deferred = True
        self._admission.keep()
        return self.settle

    def finished(self, usage: Mapping[str, Any], attempts: Sequence[tuple[str, str]] = ()) -> None:
        """The session ended: settle now, unless a drain will.

        ``attempts`` are the stream's ``(upstream, result)`` pairs: when every one was refused
        (:data:`REFUSED`: a 429 or 5xx, a connection that failed), no upstream ever answered
        2xx and no usage came, no upstream generated anything and the stream settles at zero
        (:data:`NOTHING_USED`) instead of being charged its reservation, which an upstream
        outage would otherwise spend as budget. Anything else without usage (a timeout, a cut
        stream, a client gone, also while a fallback that answered was still held back) keeps
        the reservation: the upstream may have billed it."""
        if self.deferred:
            return
        if not usage and self._refused(attempts):
            usage = NOTHING_USED
        self.settle(usage)

    def _refused(self, attempts: Sequence[tuple[str, str]]) -> bool:
        """Whether every upstream refused the request (see :meth:`finished`)."""
        if self.answered or not attempts:
            return False
        return all(result in REFUSED for _, result in attempts)

    def settle(self, usage: Mapping[str, Any]) -> None:
        """Release the admission with ``usage`` and count its cost (once; later calls no-op)."""
        if self.settled:
            return
        self.settled = True
        self._admission.release(usage)
        self._accounting.cost(self._route, self._admission.app, cost_of(usage))
