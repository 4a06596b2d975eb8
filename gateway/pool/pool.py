"""A route's upstream pool: which deployment the next attempt of a client stream goes to.

Use, per client stream (the attempt loop; one lease at a time, so never two upstream requests in
flight for one client stream)::

    tried: set[str] = set()
    while (choice := await pool.choose(tried)) and isinstance(choice, Lease):
        tried.add(choice.name)
        try:
            ...open choice.target...; on the first event: choice.succeeded(ttft_s)
            on a failure before the first byte: choice.failed("status_5xx"); continue
        finally:
            choice.release()          # when the stream (or the failed attempt) ends
    # choice is a Refusal: fallbacks next, else raise choice.error()

Order of the deployments offered: first any whose rest is over and that waits for its probe
(exactly one request probes it: the store claims the probe atomically), then the healthy ones
in the strategy's order. ``max_concurrent`` is a hard cap checked atomically with the claim.

When every untried deployment is resting, the one whose rest ends first is tried anyway, as its
probe (one request at a time), unless every resting deployment rests for a 429. Why: a rest is a
guess from a few failures, and refusing outright turns a partial outage into a full one for the
whole rest; one early probe costs one attempt and ends the rest as soon as the deployment is back.
A 429 is the upstream's explicit "not before Retry-After": then the pool refuses with
``rate_limited`` and a ``Retry-After`` (see :class:`Refusal`).

Store failures (Redis): ``on_backend_error="open"`` balances on this process's memory state
(``fallback``) until the store answers again; ``"closed"`` refuses with 503 ``unavailable``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.config.model import UpstreamTarget
from gateway.config.pool import Deployment, PoolConfig
from gateway.errors import GatewayError, RateLimited, Unavailable, UpstreamError
from gateway.limits.window import retry_after_header
from gateway.pool.memory import MemoryPoolState
from gateway.pool.state import BackendError, Candidate, PoolState, Taken, View
from gateway.pool.strategy import STRATEGIES, Strategy

FAILURE_REASONS = ("connect", "timeout", "status_5xx", "status_429", "first_event_timeout")
MAX_RETRY_AFTER = 300.0
"""Longest rest a 429's ``Retry-After`` can impose (a larger value is capped): after 5 minutes
one probe asks again, and a deployment still limited answers 429 with a fresh Retry-After."""


CHOICE_WAIT = 0.25
"""Seconds a choice on a shared store waits for the one before it (a healthy Redis makes
hundreds in that time) before it goes ahead alone."""


class PoolRecorder(Protocol):
    """What the pool reports (``gateway.metrics.PoolRouteMetrics`` implements it)."""

    def request(self, deployment: str, outcome: str) -> None: ...
    def active(self, deployment: str, delta: int) -> None: ...
    def resting(self, deployment: str, resting: bool) -> None: ...
    def rested(self, deployment: str, reason: str) -> None: ...
    def ttft(self, deployment: str, seconds: float) -> None: ...


class _Silent:
    def request(self, deployment: str, outcome: str) -> None: ...
    def active(self, deployment: str, delta: int) -> None: ...
    def resting(self, deployment: str, resting: bool) -> None: ...
    def rested(self, deployment: str, reason: str) -> None: ...
    def ttft(self, deployment: str, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why no deployment can be offered now.

    ``rate_limited``: every deployment rests for a 429 (answer 429 with ``Retry-After``);
    ``exhausted``: every deployment was tried for this stream (report the last upstream error);
    ``unavailable``: the rest are full (``max_concurrent``), resting or being probed;
    ``backend``: the shared store failed and ``on_backend_error`` is ``closed``.
    ``retry_after``: seconds until a rest ends, when known.
    """

    reason: Literal["rate_limited", "exhausted", "unavailable", "backend"]
    retry_after: float | None = None

    def error(self) -> GatewayError:
        """The client-facing error: 429 ``rate_limited``, 502 after all failed, else 503."""
        headers = (
            {"Retry-After": retry_after_header(self.retry_after)}
            if self.retry_after is not None
            else None
        )
        if self.reason == "rate_limited":
            return RateLimited("every upstream deployment is rate limited", headers=headers)
        if self.reason == "exhausted":
            return UpstreamError("every upstream deployment failed", retryable=True)
        return Unavailable("no upstream deployment is available", headers=headers)


_CLOSING: set[asyncio.Task[None]] = set()
"""Stores of retired pools being closed (a reference, so that the loop does not drop them)."""


class Lease:
    """One attempt's claim on one deployment. Outcome calls never raise and never block."""

    __slots__ = ("_released", "_state", "_verdict", "deployment", "id", "pool", "probe")

    def __init__(
        self, pool: Pool, state: PoolState, deployment: Deployment, lease: str, probe: bool
    ) -> None:
        self.pool = pool
        self._state = state
        self.deployment = deployment
        self.id = lease
        self.probe = probe
        """This attempt is the deployment's probe after (or, all resting, during) a rest."""
        self._verdict = False
        self._released = False

    @property
    def name(self) -> str:
        return self.deployment.name

    @property
    def target(self) -> UpstreamTarget:
        return self.deployment.target

    def succeeded(self, ttft_s: float) -> None:
        """The first event arrived ``ttft_s`` seconds after the request was sent."""
        if self._verdict:
            return
        self._verdict = True
        self._state.succeeded(self.deployment.name, self.id, ttft_s)
        self.pool.recorder.request(self.deployment.name, "ok")
        self.pool.recorder.ttft(self.deployment.name, ttft_s)
        if self.probe:  # back in rotation now, not at the pool's next choice
            self.pool.back(self.deployment.name)

    def failed(self, reason: str, retry_after: float | None = None) -> None:
        """The attempt failed before its first event; ``reason`` is one of
        :data:`FAILURE_REASONS` (``ValueError`` otherwise: a caller bug). ``status_429`` rests the
        deployment for ``retry_after`` (at least 1 s, at most :data:`MAX_RETRY_AFTER`; the
        cooldown duration when absent); the others count toward the cooldown."""
        if reason not in FAILURE_REASONS:
            raise ValueError(f"unknown failure reason {reason!r}")
        if self._verdict:
            return
        self._verdict = True
        pool = self.pool
        rest: float | None = None
        if reason == "status_429":
            wait = pool.config.cooldown.duration if retry_after is None else retry_after
            rest = min(max(wait, 1.0), MAX_RETRY_AFTER)
        now = pool.clock()
        self._state.failed(self.deployment.name, self.id, now, pool.config.cooldown, rest, reason)
        pool.recorder.request(self.deployment.name, reason)

    def release(self) -> None:
        """The stream (or the failed attempt) ended; idempotent. Without a verdict the attempt
        counts as ``abandoned`` (client gone first) and a probe's claim is freed."""
        if self._released:
            return
        self._released = True
        self._state.release(self.deployment.name, self.id)
        self.pool.recorder.active(self.deployment.name, -1)
        if not self._verdict:
            self.pool.recorder.request(self.deployment.name, "abandoned")
        self.pool.lease_ended()


class Pool:
    """One route's pool over one state store. Built once per config state; see the module doc."""

    def __init__(
        self,
        route: str,
        config: PoolConfig,
        state: PoolState | None = None,
        *,
        recorder: PoolRecorder | None = None,
        on_backend_error: Literal["open", "closed"] = "open",
        on_error: Callable[[Exception], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.route = route
        self.config = config
        self.state = state or MemoryPoolState()
        self.fallback = MemoryPoolState()
        self.recorder: PoolRecorder = recorder or _Silent()
        self.on_backend_error = on_backend_error
        self.on_error = on_error
        self.clock = clock
        self.strategy: Strategy = STRATEGIES[config.strategy](config.names)
        self.deployments = config.deployments
        self.names = config.names
        self._by_name = {d.name: d for d in config.deployments}
        self._caps = {d.name: d.max_concurrent or 0 for d in config.deployments}
        self._offer = {d.name: Candidate(d.name, d.max_concurrent or 0) for d in config.deployments}
        self._resting: dict[str, bool] = {}
        self._marked = 0
        """How many deployments the resting gauge shows as resting (0: the calm path is exact)."""
        self._pairs: list[tuple[Deployment, View]] = []
        self._pairs_of: PoolState | None = None
        self._choosing = asyncio.Lock()
        """A shared store's choices, one at a time (see :meth:`choose`)."""
        self._leases = 0
        """Leases on this pool's store not yet released (those of the pools it carried on)."""
        self._heir: Pool | None = None
        """The pool that took this one's store over at a reload: it counts the leases."""
        self._orphaned = False
        """A reload replaced this pool and nobody took its store over (:meth:`retire`)."""
        self._wire()

    def _wire(self) -> None:
        for state in (self.state, self.fallback):
            state.on_rest = self._on_rest

    def _on_rest(self, name: str, reason: str) -> None:
        if name in self._by_name:
            self.recorder.rested(name, reason)
            self._set_resting(name, True)

    def carry_from(self, old: Pool) -> None:
        """Take over ``old``'s state (config reload): deployments with the same name keep their
        open counts, rests, probes and EWMA, and leases opened on ``old`` release into it. The
        store is kept only when it is of the same kind (a backend change starts afresh)."""
        if type(old.state) is type(self.state) and getattr(old.state, "url", None) == getattr(
            self.state, "url", None
        ):
            self.state = old.state
            self._leases, old._leases, old._heir = old._leases, 0, self
        self.fallback = old.fallback
        if isinstance(self.fallback, MemoryPoolState):
            self.fallback.forget(self.names)
        if isinstance(self.state, MemoryPoolState):
            self.state.forget(self.names)
        self._wire()
        if type(old.strategy) is type(self.strategy):
            self.strategy.carry_from(old.strategy)
        old.retire(self.names, orphaned=self.state is not old.state)

    def retire(self, keep: Collection[str] = (), *, orphaned: bool = True) -> None:
        """This pool is replaced (reload): its deployments not in ``keep`` leave the config, so
        their resting gauge goes to 0 (nobody would ever lower it again; the
        ``GatewayDeploymentResting`` alert would fire for a deployment that is gone).

        ``orphaned``: no new pool took its store over (the route is gone, or its backend
        changed): the store is closed once the streams it still counts have ended (a Redis
        store's connection and lease refresher stayed open until the process exited)."""
        for name, resting in list(self._resting.items()):
            if resting and name not in keep:
                self._set_resting(name, False)
        self._orphaned = orphaned
        if orphaned and not self._leases:
            self._close_soon()

    def lease_ended(self) -> None:
        """A lease of this pool was released (:meth:`Lease.release`)."""
        self._count(-1)

    def _count(self, change: int) -> None:
        """Count a lease taken (+1) or released (-1) where the store now is (the newest
        pool that carried it on); the last release of an orphaned store closes it."""
        pool = self
        while pool._heir is not None:
            pool = pool._heir
        pool._leases += change
        if pool._orphaned and not pool._leases:
            pool._close_soon()

    def _close_soon(self) -> None:
        """Close the store in the background (a reload runs outside any request)."""
        self._orphaned = False  # once
        try:
            task = asyncio.get_running_loop().create_task(self.close())
        except RuntimeError:  # no loop (a reload in a test without one): nothing was opened
            return
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    def back(self, name: str) -> None:
        """``name``'s probe succeeded: its rest is over, the resting gauge says so at once."""
        if self._resting.get(name):
            self._set_resting(name, False)

    async def acquire(self, tried: Collection[str] = ()) -> Lease | None:
        """The next deployment for a client stream that already tried ``tried``, or ``None``
        (then :meth:`choose` tells why). Never raises for store failures."""
        state = self.state
        if not tried and isinstance(state, MemoryPoolState) and not (state.resting or self._marked):
            choice = self._calm(state, self.clock())  # no coroutine on the common path
        else:
            choice = await self.choose(tried)
        return choice if isinstance(choice, Lease) else None

    async def choose(self, tried: Collection[str] = ()) -> Lease | Refusal:
        """Like :meth:`acquire`, with a :class:`Refusal` instead of ``None``.

        With a shared store (Redis) a choice reads the store, orders the candidates and takes
        one in two round trips; this process makes those choices one at a time. Made at once,
        a burst all read the same counts and the strategy's same turn before any took, and all
        took the first deployment (30 of 30 under ``round_robin``). A choice that waits
        :data:`CHOICE_WAIT` for its turn goes ahead without it: a store that hangs delays
        each request by its own timeout, never by those of the requests before it.
        """
        if isinstance(self.state, MemoryPoolState):  # nothing waits: no lock
            return await self._choose(tried)
        try:
            async with asyncio.timeout(CHOICE_WAIT):
                await self._choosing.acquire()
        except TimeoutError:  # the choice before is stuck on the store: do not queue behind it
            return await self._choose(tried)
        try:
            return await self._choose(tried)
        finally:
            self._choosing.release()

    async def _choose(self, tried: Collection[str]) -> Lease | Refusal:
        now = self.clock()
        state = self.state
        if isinstance(state, MemoryPoolState):
            if not (tried or state.resting or self._marked):
                return self._calm(state, now)  # the common case: nothing to check
            views = state.views(self.names)
        else:
            try:
                views = await state.snapshot(self.names, now)
            except BackendError as exc:
                self._report(exc)
                if self.on_backend_error == "closed":
                    return Refusal("backend")
                state = self.fallback
                views = self.fallback.views(self.names)
        self._note_resting(views, now)
        candidates = self._candidates(views, tried, now)
        taken: Taken | None = None
        lease = state.new_lease_id()
        if candidates:
            try:
                if isinstance(state, MemoryPoolState):
                    taken = state.take_now(candidates, lease, now)
                else:
                    taken = await state.take(candidates, lease, now)
            except BackendError as exc:
                self._report(exc)
                if self.on_backend_error == "closed":
                    return Refusal("backend")
                state = self.fallback
                taken = self.fallback.take_now(candidates, lease, now)
        return self._lease(state, lease, taken, views, tried, now)

    def _calm(self, state: MemoryPoolState, now: float) -> Lease | Refusal:
        """Memory store, nothing resting, nothing tried: the strategy's order is the offer."""
        if self._pairs_of is not state:  # views are live objects of this store: bind them once
            self._pairs = list(zip(self.deployments, state.views(self.names), strict=True))
            self._pairs_of = state
        offer = self._offer
        candidates = [offer[d.name] for d, _ in self.strategy.order(self._pairs)]
        lease = state.new_lease_id()
        taken = state.take_now(candidates, lease, now)
        return self._lease(state, lease, taken, None, (), now)

    def _lease(
        self,
        state: PoolState,
        lease: str,
        taken: Taken | None,
        views: Sequence[View] | None,
        tried: Collection[str],
        now: float,
    ) -> Lease | Refusal:
        if taken is None:
            self.strategy.taken(None)
            if views is None:
                views = [v for _, v in self._pairs]
            return self._refusal(views, tried, now)
        dep = self._by_name[taken.name]
        self.strategy.taken(None if taken.probe else dep)  # only non-probes come from its order
        self.recorder.active(dep.name, 1)
        self._count(1)
        return Lease(self, state, dep, lease, taken.probe)

    def _candidates(
        self, views: Sequence[View], tried: Collection[str], now: float
    ) -> list[Candidate]:
        offer = self._offer
        first: list[Candidate] = []
        healthy: list[tuple[Deployment, View]] = []
        resting: list[tuple[Deployment, View]] = []
        for dep, view in zip(self.deployments, views, strict=True):
            if tried and dep.name in tried:
                continue
            if not view.rest_until:
                healthy.append((dep, view))
            elif view.rest_until <= now:
                if not view.probing:
                    first.append(offer[dep.name])
            elif not view.probing:
                resting.append((dep, view))
        if healthy:
            first.extend([offer[d.name] for d, _ in self.strategy.order(healthy)])
        elif not first and not any(v.probing and v.rest_until > now for v in views):
            # everything rests and no early probe is out yet: probe the first to come back
            early = [dv for dv in resting if dv[1].rest_reason != "status_429"]
            if early:
                dep, _ = min(early, key=lambda dv: dv[1].rest_until)
                first.append(Candidate(dep.name, self._caps[dep.name], early=True))
        return first

    def _refusal(self, views: Sequence[View], tried: Collection[str], now: float) -> Refusal:
        if all(v.rest_until > now and v.rest_reason == "status_429" for v in views):
            return Refusal("rate_limited", min(v.rest_until for v in views) - now)
        if all(name in tried for name in self.names):
            return Refusal("exhausted")
        open_ = [v for n, v in zip(self.names, views, strict=True) if n not in tried]
        if all(v.rest_until > now for v in open_):
            return Refusal("unavailable", min(v.rest_until for v in open_) - now)
        return Refusal("unavailable")

    def _note_resting(self, views: Sequence[View], now: float) -> None:
        """Keep the resting gauge in step with the store (1 until the probe succeeds)."""
        known = self._resting
        for name, view in zip(self.names, views, strict=True):
            resting = bool(view.rest_until)  # resting, or its probe has not yet said "back"
            if known.get(name) is not resting:
                self._set_resting(name, resting)

    def _set_resting(self, name: str, resting: bool) -> None:
        self._resting[name] = resting
        self._marked = sum(self._resting.values())
        self.recorder.resting(name, resting)

    def _report(self, exc: Exception) -> None:
        if self.on_error is not None:
            self.on_error(exc)

    async def close(self) -> None:
        """Close the store (shutdown; not on reload, where :meth:`carry_from` keeps it)."""
        await self.state.close()
