"""The limiter: turns an app key and a route into scopes, asks the backend, reports failures.

Per request (see ``features.py``): :meth:`Limiter.ticket` before the body is read, then
:meth:`Ticket.reserve` once the request is valid (so an invalid request never spends budget and
``max_tokens`` is known), then :meth:`Ticket.release` with the stream's usage when it ends.

Token reservation: ``max_tokens`` from the request, else ``limits.token_estimate``, capped at the
smallest ``tokens_per_minute`` involved (so a large ``max_tokens`` waits for an empty window
instead of never fitting). At the end the reservation is replaced by the reported usage
(``input_tokens + output_tokens``); with no usage reported it stands as the charge.

Backend failures: ``limits.on_backend_error: open`` admits the request unlimited, ``closed``
refuses it with 503 ``unavailable``; both count ``gateway_limit_backend_errors_total`` and log
a warning at most every 10 s (with the number of errors since the last one). An acquire that
failed or was cancelled (the client left) may still have been run by the store (a stalled Redis
runs what it was sent when it wakes), which would hold a concurrency slot for nobody: its slot is
freed by its lease at once and again after :data:`ABANDON_AGAIN_AFTER`
(:meth:`~gateway.limits.base.LimitBackend.abandon`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from gateway.admission import NOT_ADMITTED, Demand
from gateway.config.model import AppKey, GatewayConfig, RouteConfig, RouteLimits
from gateway.errors import RateLimited, Unavailable
from gateway.limits.base import BackendError, Denied, Grant, LimitBackend, Scope
from gateway.limits.window import retry_after_header
from gateway.logs import log_event
from gateway.metrics import Metrics

WARN_EVERY = 10.0
ABANDON_AGAIN_AFTER = (5.0, 20.0)
"""Seconds after an acquire the limiter gave up on at which its slot is freed again: a store
that stalled may run the acquire after the first attempt (a Redis lease expires by itself
30 s after the request, so later attempts would find nothing)."""


def has_limits(limits: RouteLimits) -> bool:
    return any(
        v is not None
        for v in (limits.concurrent_streams, limits.requests_per_minute, limits.tokens_per_minute)
    )


def tokens_used(usage: Mapping[str, Any] | None) -> int | None:
    """Tokens a stream consumed, from its ``usage`` event; ``None`` when none was reported."""
    if not usage or ("input_tokens" not in usage and "output_tokens" not in usage):
        return None
    return int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))


class ErrorReporter:
    """Counts backend failures and logs them without flooding (one warning per WARN_EVERY s)."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.clock = clock
        self.last_warning = float("-inf")
        self.suppressed = 0

    def __call__(self, exc: Exception) -> None:
        self.metrics.limit_backend_error()
        now = self.clock()
        if now - self.last_warning < WARN_EVERY:
            self.suppressed += 1
            return
        log_event(
            "limits_backend_error",
            logging.WARNING,
            detail=str(exc),
            suppressed=self.suppressed,
        )
        self.last_warning, self.suppressed = now, 0


class Limiter:
    """Applies ``config``'s route and app limits through ``backend``."""

    def __init__(
        self,
        config: GatewayConfig,
        backend: LimitBackend,
        report: Callable[[Exception], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.report = report
        self.clock = clock
        self.fail_open = config.limits.on_backend_error == "open"
        self.token_estimate = config.limits.token_estimate

    def abandon(self, scopes: tuple[Scope, ...], lease: str) -> None:
        """Free ``lease``'s slot (an acquire given up on), now and after each of
        :data:`ABANDON_AGAIN_AFTER` (see the module docs)."""
        self._abandon_now(scopes, lease)
        loop = asyncio.get_running_loop()
        for delay in ABANDON_AGAIN_AFTER:
            loop.call_later(delay, self._abandon_now, scopes, lease)

    def _abandon_now(self, scopes: tuple[Scope, ...], lease: str) -> None:
        self.backend.abandon(scopes, lease, self.clock())

    def ticket(self, app: AppKey | None, route: RouteConfig) -> Ticket | None:
        """The request's ticket, or ``None`` when no limit applies to it."""
        scopes = []
        if app is not None and has_limits(app.limits):
            scopes.append(Scope(f"app:{app.name}", app.limits))
        if has_limits(route.limits):
            scopes.append(Scope(f"route:{route.name}", route.limits))
        return Ticket(self, tuple(scopes)) if scopes else None


class Ticket:
    """One request's passage through the limits: reserve once, release once (idempotent)."""

    __slots__ = ("grant", "kept", "limiter", "released", "scopes")

    def __init__(self, limiter: Limiter, scopes: tuple[Scope, ...]) -> None:
        self.limiter = limiter
        self.scopes = scopes
        self.grant: Grant | None = None
        self.released = False
        self.kept = False

    def _cost(self, max_tokens: int | None) -> int:
        caps = [s.limits.tokens_per_minute for s in self.scopes]
        tpm = [c for c in caps if c is not None]
        if not tpm:
            return 0
        return min(max_tokens or self.limiter.token_estimate, *tpm)

    async def reserve(self, demand: Demand) -> None:
        """Count the request against every limit; raises 429 (or 503 when failing closed).

        The slot is then held until :meth:`release`; if the handler ends without calling it
        (cancelled between the two), a done-callback on the current task releases it anyway,
        unless :meth:`keep` handed the ticket to a drain.
        """
        lim = self.limiter
        lease = uuid.uuid4().hex
        try:
            result = await lim.backend.acquire(
                self.scopes, self._cost(demand.max_tokens), lim.clock(), lease
            )
        except asyncio.CancelledError:  # the client left while the store was asked
            lim.abandon(self.scopes, lease)
            raise
        except BackendError as exc:
            lim.abandon(self.scopes, lease)
            lim.report(exc)
            if lim.fail_open:
                return
            raise Unavailable("rate limits are unavailable", headers={"Retry-After": "1"}) from None
        if isinstance(result, Denied):
            raise RateLimited(
                f"{result.limit} limit reached ({result.scope})",
                headers={"Retry-After": retry_after_header(result.retry_after)},
            )
        self.grant = result
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _task: None if self.kept else self.release(None))

    def keep(self) -> None:
        """A drain releases the ticket (with the real usage) when it ends, not the task."""
        self.kept = self.grant is not None

    def release(self, usage: Mapping[str, Any] | None) -> None:
        """Free the slot and reconcile tokens with ``usage`` (once; later calls do nothing)."""
        if self.released or self.grant is None:
            return
        self.released = True
        backend, now = self.limiter.backend, self.limiter.clock()
        if usage is NOT_ADMITTED:  # a later hold (a budget) refused the request after all
            backend.cancel(self.grant, now)
        else:
            backend.release(self.grant, tokens_used(usage), now)
