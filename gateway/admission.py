"""What auth and limits decided for one request: a typed value, not a dict of callbacks.

``features.py`` builds the gateway's ``admit`` function (auth, then the limits' tickets and the
app key's budget); a stream then calls :meth:`Admission.reserve` once the request is valid (with
its :class:`Demand`) and :meth:`Admission.release` when it ends, whatever way it ends (refused,
failed, aborted, completed). A stream whose upstream is drained after the client left
(``on_client_abort: drain``) calls :meth:`Admission.keep` first: the drain releases the holds
with the real usage when it ends, not the request's task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from gateway.values import value


@value
class Demand:
    """What a valid request may consume, known before it streams: its ``max_tokens`` (``None``:
    not given), the ``model`` it asked for (``None``: each target's configured model) and the
    size of its body in bytes (the input estimate of a budget's worst case)."""

    max_tokens: int | None = None
    model: str | None = None
    body_bytes: int = 0


NOT_ADMITTED: Mapping[str, Any] = MappingProxyType(
    {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
)
"""The usage a hold is released with when a later hold refused the request: nothing was used,
and a hold that can tell (a limits ticket, by identity) un-counts the request as well, so a
refusal spends no one's limits ("all admit it and all count it, or nothing is counted")."""


class Hold(Protocol):
    """Something a request holds while it streams (a limits ticket, a budget reservation)."""

    async def reserve(self, demand: Demand) -> None:
        """Count the request in; raises a :class:`~gateway.errors.GatewayError` (429, 503)."""

    def keep(self) -> None:
        """Hold on past the request's task (a drain releases it); no-op before :meth:`reserve`."""

    def release(self, usage: Mapping[str, Any] | None) -> None:
        """Give back what was held, reconciled with the real ``usage`` (idempotent).

        ``usage`` is the stream's merged ``usage`` data (``cost_usd`` included when priced)."""


@dataclass(slots=True)
class Admission:
    """The request's app (``None`` without auth) and what it holds of the limits."""

    app: str | None = None
    holds: list[Hold] = field(default_factory=list)

    async def reserve(self, demand: Demand) -> None:
        """Reserve every hold in order; on a refusal, release those already reserved."""
        for index, hold in enumerate(self.holds):
            try:
                await hold.reserve(demand)
            except BaseException:
                for earlier in self.holds[:index]:
                    earlier.release(NOT_ADMITTED)
                raise

    def keep(self) -> None:
        for hold in self.holds:
            hold.keep()

    def release(self, usage: Mapping[str, Any] | None) -> None:
        for hold in self.holds:
            hold.release(usage)


NO_AUTH = Admission()
"""The admission of every request when neither auth nor limits are configured."""
