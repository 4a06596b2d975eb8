"""How a stream chooses its upstreams: one attempt at a time, before the first byte.

:class:`~gateway.stream.attempts.Failover` consumes a :class:`Choices`: it asks :meth:`next`
for an attempt, opens it, and reports what happened (:meth:`answered` once its first event
arrived, :meth:`failed` when it failed before that); :meth:`close` when the stream ends.

* :class:`InOrder`: the route's targets in config order (primary, then fallbacks).
* :class:`Pooled`: a route with ``upstreams`` (contract section 11): the pool's choices
  (:meth:`gateway.pool.Pool.choose`, each one a :class:`~gateway.pool.Lease` held until the
  attempt fails or the stream ends, so never two in flight), then the route's fallbacks, then
  the pool's refusal as the error (429 with ``Retry-After`` when every deployment is rate
  limited, 503 when none can take the stream, the last upstream error when all were tried).

:func:`choices_for` picks one per stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.errors import (
    EarlyError,
    GatewayError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.pool import Lease, Pool, Refusal
from gateway.stream.attempts import Attempt
from gateway.stream.source import Source


class Choices(Protocol):
    """The upstreams one stream may try, in the order they are offered."""

    final: bool
    """The attempt :meth:`next` returned last is the last one (nothing would follow it)."""

    leased: bool
    """The attempt :meth:`next` returned last is a pool deployment (its outcome matters)."""

    async def next(self) -> Attempt | None:
        """The next attempt, or ``None`` when none is left (then :meth:`error`)."""

    def error(self, last: GatewayError | None) -> GatewayError:
        """What the stream fails with when :meth:`next` has nothing left; ``last`` is the last
        attempt's failure (``None`` when nothing was tried)."""

    def answered(self, ttft: float) -> None:
        """The current attempt's first event came ``ttft`` seconds after its request."""

    def failed(self, exc: GatewayError, source: Source | None) -> None:
        """The current attempt failed with ``exc`` before its first byte reached the client;
        ``source`` is its upstream when it had answered."""

    def close(self) -> None:
        """The stream ended: release what the current attempt holds (idempotent)."""


class InOrder:
    """The targets in order; nothing to report (a route without a pool)."""

    __slots__ = ("_attempts", "_index", "final", "leased")

    def __init__(self, attempts: Sequence[Attempt]) -> None:
        self._attempts = attempts
        self._index = 0
        self.final = False
        self.leased = False

    async def next(self) -> Attempt | None:
        index = self._index
        attempts = self._attempts
        if index >= len(attempts):
            return None
        self._index = index + 1
        self.final = index + 1 == len(attempts)
        return attempts[index]

    def error(self, last: GatewayError | None) -> GatewayError:
        assert last is not None, "a route has at least one target"
        return last

    def answered(self, ttft: float) -> None:
        return None

    def failed(self, exc: GatewayError, source: Source | None) -> None:
        return None

    def close(self) -> None:
        return None


class Pooled:
    """A pooled route: the pool's choices, then the fallbacks (see the module docs)."""

    __slots__ = (
        "_by_name",
        "_fallback_tried",
        "_fallbacks",
        "_lease",
        "_pool",
        "_refusal",
        "_tried",
        "final",
        "leased",
    )

    def __init__(self, pool: Pool, attempts: Sequence[Attempt]) -> None:
        """``attempts`` are the route's (``build_attempts``): one per deployment, then the
        fallbacks (``RouteConfig.targets``)."""
        self._pool = pool
        self._by_name = {
            a.target.deployment: a for a in attempts if a.target.deployment is not None
        }
        self._fallbacks = [a for a in attempts if a.target.deployment is None]
        self._tried: set[str] = set()
        self._lease: Lease | None = None
        self._refusal: Refusal | None = None
        self._fallback_tried = False
        self.final = False
        self.leased = False

    async def next(self) -> Attempt | None:
        self.close()  # the previous attempt failed: its slot is free again
        if self._refusal is None:
            choice = await self._pool.choose(self._tried)
            if isinstance(choice, Lease):
                attempt = self._by_name.get(choice.name)
                if attempt is not None:
                    self._tried.add(choice.name)
                    self._lease = choice
                    self.leased = True
                    self.final = not self._fallbacks and len(self._tried) == len(self._by_name)
                    return attempt
                choice.release()  # a deployment this stream has no request for (a reload)
                choice = Refusal("unavailable")
            self._refusal = choice
        self.leased = False
        if not self._fallbacks:
            return None
        attempt = self._fallbacks.pop(0)
        self._fallback_tried = True
        self.final = not self._fallbacks
        return attempt

    def error(self, last: GatewayError | None) -> GatewayError:
        refusal = self._refusal
        if last is not None and (
            refusal is None or refusal.reason == "exhausted" or self._fallback_tried
        ):
            return last
        return (refusal or Refusal("unavailable")).error()

    def answered(self, ttft: float) -> None:
        if self._lease is not None:
            self._lease.succeeded(ttft)

    def failed(self, exc: GatewayError, source: Source | None) -> None:
        lease = self._lease
        if lease is None or not self.leased:
            return
        reason = failure_reason(exc, source)
        if reason is not None:
            retry_after = exc.retry_after if isinstance(exc, UpstreamStatusError) else None
            lease.failed(reason, retry_after)

    def close(self) -> None:
        lease = self._lease
        if lease is not None:
            self._lease = None
            lease.release()


def failure_reason(exc: GatewayError, source: Source | None) -> str | None:
    """The pool's failure reason for an attempt that failed with ``exc`` before the first byte
    (:data:`gateway.pool.FAILURE_REASONS`), or ``None``: not the deployment's fault (a 4xx other
    than 429, a shutdown), so no verdict. An ``error`` event before any content counts as a
    5xx (the upstream said it failed); a timeout before any event after the upstream answered
    is ``first_event_timeout``."""
    if isinstance(exc, UpstreamStatusError):
        if exc.upstream_status == 429:
            return "status_429"
        return "status_5xx" if exc.upstream_status >= 500 else None
    if isinstance(exc, UpstreamTimeout):
        return "first_event_timeout" if source is not None and not source.got_event else "timeout"
    if isinstance(exc, EarlyError):
        return "status_5xx"
    if isinstance(exc, UpstreamError) and exc.retryable:
        return "connect"
    return None


def choices_for(attempts: Sequence[Attempt], pool: Pool | None) -> Choices:
    """The choices of one stream: :class:`Pooled` on a route with a pool, else :class:`InOrder`."""
    if pool is None:
        return InOrder(attempts)
    return Pooled(pool, attempts)
