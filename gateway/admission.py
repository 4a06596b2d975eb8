"""What auth and limits decided for one request: a typed value, not a dict of callbacks.

``features.py`` builds the gateway's ``admit`` function (auth, then the limits' tickets); a stream
then calls :meth:`Admission.reserve` once the request is valid and :meth:`Admission.release` when
it ends, whatever way it ends (refused, failed, aborted, completed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class Hold(Protocol):
    """Something a request holds while it streams (a limits ticket, a budget reservation)."""

    async def reserve(self, max_tokens: int | None) -> None:
        """Count the request in; raises a :class:`~gateway.errors.GatewayError` (429, 503)."""

    def release(self, usage: dict[str, int] | None) -> None:
        """Give back what was held, reconciled with the real ``usage`` (idempotent)."""


@dataclass(slots=True)
class Admission:
    """The request's app (``None`` without auth) and what it holds of the limits."""

    app: str | None = None
    holds: list[Hold] = field(default_factory=list)

    async def reserve(self, max_tokens: int | None) -> None:
        """Reserve every hold in order; on a refusal, release those already reserved."""
        for index, hold in enumerate(self.holds):
            try:
                await hold.reserve(max_tokens)
            except BaseException:
                for earlier in self.holds[:index]:
                    earlier.release(None)
                raise

    def release(self, usage: dict[str, int] | None) -> None:
        for hold in self.holds:
            hold.release(usage)


NO_AUTH = Admission()
"""The admission of every request when neither auth nor limits are configured."""
