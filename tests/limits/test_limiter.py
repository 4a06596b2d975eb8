"""The limiter's own logic: scopes, reservations, release on every exit, backend failures."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence

import pytest

from gateway.admission import Demand
from gateway.config.model import AppKey, RouteLimits
from gateway.errors import RateLimited, Unavailable
from gateway.limits import BackendError, ErrorReporter, Grant, Limiter, MemoryBackend, Scope
from gateway.limits import limiter as limiter_module
from gateway.limits.base import Denied, LimitBackend
from gateway.limits.limiter import tokens_used
from gateway.limits.redis_backend import PREFIX, RedisBackend
from gateway.metrics import Metrics
from tests.limits.redis_server import RedisServer
from tests.support.gateway import config_from, wait_for

ROUTE = {"name": "r", "provider": "simulated"}


def make(
    route_limits: dict[str, int] | None = None,
    backend: LimitBackend | None = None,
    on_error: str = "open",
    token_estimate: int = 1000,
) -> tuple[Limiter, Metrics, MemoryBackend | LimitBackend]:
    doc = {
        "routes": [{**ROUTE, "limits": route_limits or {}}],
        "limits": {"on_backend_error": on_error, "token_estimate": token_estimate},
    }
    config = config_from(doc)
    metrics = Metrics()
    backend = backend or MemoryBackend()
    return Limiter(config, backend, ErrorReporter(metrics)), metrics, backend


class Broken(LimitBackend):
    async def acquire(
        self, scopes: Sequence[Scope], tokens: int, now: float, lease: str
    ) -> Grant | Denied:
        raise BackendError("limits backend: ConnectionError")

    def release(self, grant: Grant, tokens_used: int | None, now: float) -> None:
        raise AssertionError("nothing was granted")

    def abandon(self, scopes: Sequence[Scope], lease: str, now: float) -> None:
        return None  # a store that never ran anything holds nothing


async def test_no_limits_means_no_ticket() -> None:
    limiter, _, _ = make()
    route = config_from({"routes": [ROUTE]}).routes[0]
    assert limiter.ticket(None, route) is None


async def test_app_and_route_scopes() -> None:
    limiter, _, _ = make({"requests_per_minute": 5})
    route = config_from({"routes": [{**ROUTE, "limits": {"requests_per_minute": 5}}]}).routes[0]
    app = AppKey("mobile", "k", None, RouteLimits(concurrent_streams=2))
    ticket = limiter.ticket(app, route)
    assert ticket is not None
    assert [s.name for s in ticket.scopes] == ["app:mobile", "route:r"]
    no_limits_app = AppKey("web", "k2")
    ticket = limiter.ticket(no_limits_app, route)
    assert ticket is not None and [s.name for s in ticket.scopes] == ["route:r"]


@pytest.mark.parametrize(("max_tokens", "expected"), [(None, 300), (50, 50), (5000, 400)], ids=str)
async def test_reservation_is_max_tokens_or_the_estimate_capped_at_the_limit(
    max_tokens: int | None, expected: int
) -> None:
    limits = {"tokens_per_minute": 400}
    limiter, _, backend = make(limits, token_estimate=300)
    route = config_from({"routes": [{**ROUTE, "limits": limits}]}).routes[0]
    ticket = limiter.ticket(None, route)
    assert ticket is not None
    await ticket.reserve(Demand(max_tokens))
    assert ticket.grant is not None and ticket.grant.tokens == expected
    assert isinstance(backend, MemoryBackend)
    assert backend.windows[("route:r", "tpm")].cur == expected
    ticket.release({"input_tokens": 7, "output_tokens": 3})
    assert backend.windows[("route:r", "tpm")].cur == 10
    ticket.release({"input_tokens": 100, "output_tokens": 100})  # a second release is a no-op
    assert backend.windows[("route:r", "tpm")].cur == 10


def test_tokens_used_counts_input_and_output() -> None:
    assert tokens_used({"input_tokens": 5, "output_tokens": 7, "reasoning_tokens": 3}) == 12
    assert tokens_used({"output_tokens": 7}) == 7
    assert tokens_used({}) is None
    assert tokens_used(None) is None


async def test_over_the_limit_is_429_with_retry_after() -> None:
    limits = {"requests_per_minute": 1}
    limiter, _, _ = make(limits)
    route = config_from({"routes": [{**ROUTE, "limits": limits}]}).routes[0]
    first = limiter.ticket(None, route)
    assert first is not None
    await first.reserve(Demand())
    second = limiter.ticket(None, route)
    assert second is not None
    with pytest.raises(RateLimited) as info:
        await second.reserve(Demand())
    assert info.value.http_status == 429 and info.value.error_code == "rate_limited"
    assert int(info.value.headers["Retry-After"]) >= 1
    assert "requests_per_minute" in info.value.message and "route:r" in info.value.message


async def _slot_holder(limiter: Limiter, route: object, fail: bool) -> None:
    ticket = limiter.ticket(None, route)  # type: ignore[arg-type]
    assert ticket is not None
    await ticket.reserve(Demand())
    if fail:
        raise RuntimeError("the handler failed")
    await asyncio.sleep(30)


@pytest.mark.parametrize("how", ["cancelled", "failed"])
async def test_a_slot_is_released_when_the_handler_ends_without_release(how: str) -> None:
    limits = {"concurrent_streams": 1}
    limiter, _, backend = make(limits)
    route = config_from({"routes": [{**ROUTE, "limits": limits}]}).routes[0]
    assert isinstance(backend, MemoryBackend)
    task = asyncio.ensure_future(_slot_holder(limiter, route, fail=how == "failed"))
    await wait_for(lambda: backend.streams.get("route:r") == 1 or task.done(), timeout=2)
    if how == "cancelled":
        task.cancel()
    with pytest.raises((asyncio.CancelledError, RuntimeError)):
        await task
    await asyncio.sleep(0)  # done-callbacks run on the next loop turn
    assert backend.streams["route:r"] == 0


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_backend_failure_fails_open_or_closed(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    limits = {"requests_per_minute": 1}
    limiter, metrics, _ = make(limits, backend=Broken(), on_error=mode)
    route = config_from({"routes": [{**ROUTE, "limits": limits}]}).routes[0]
    caplog.set_level(logging.WARNING, logger="gateway")
    for _ in range(3):
        ticket = limiter.ticket(None, route)
        assert ticket is not None
        if mode == "open":
            await ticket.reserve(Demand())
            ticket.release({})  # nothing granted: nothing to release
        else:
            with pytest.raises(Unavailable) as info:
                await ticket.reserve(Demand())
            assert info.value.http_status == 503 and info.value.headers["Retry-After"] == "1"
    errors = metrics.registry.get_sample_value("gateway_limit_backend_errors_total")
    assert errors == 3
    warnings = [r for r in caplog.records if r.getMessage() == "limits_backend_error"]
    assert len(warnings) == 1  # rate-limited: one warning per 10 s


def test_error_reporter_warns_again_after_the_quiet_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    metrics = Metrics()
    report = ErrorReporter(metrics, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="gateway")
    for t in (0.0, 1.0, 5.0, 10.5, 11.0):
        now[0] = t
        report(BackendError("down"))
    warnings = [r for r in caplog.records if r.getMessage() == "limits_backend_error"]
    assert len(warnings) == 2
    assert warnings[1].fields["suppressed"] == 2  # type: ignore[attr-defined]
    assert metrics.registry.get_sample_value("gateway_limit_backend_errors_total") == 5


class Stalled(LimitBackend):
    """A store that never answers an acquire; records the leases abandoned."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.leases: list[str] = []
        self.abandoned: list[str] = []

    async def acquire(
        self, scopes: Sequence[Scope], tokens: int, now: float, lease: str
    ) -> Grant | Denied:
        self.leases.append(lease)
        self.asked.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def release(self, grant: Grant, tokens_used: int | None, now: float) -> None:
        raise AssertionError("nothing was granted")

    def abandon(self, scopes: Sequence[Scope], lease: str, now: float) -> None:
        self.abandoned.append(lease)


async def test_a_client_leaving_during_the_acquire_abandons_its_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store may run the acquire it was sent: its slot is freed by lease, now and later."""
    monkeypatch.setattr(limiter_module, "ABANDON_AGAIN_AFTER", (0.0,))
    limits = {"concurrent_streams": 1}
    backend = Stalled()
    limiter, _, _ = make(limits, backend=backend)
    route = config_from({"routes": [{**ROUTE, "limits": limits}]}).routes[0]
    ticket = limiter.ticket(None, route)
    assert ticket is not None
    task = asyncio.ensure_future(ticket.reserve(Demand()))
    await backend.asked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.abandoned == backend.leases  # at once
    await wait_for(lambda: len(backend.abandoned) == 2, timeout=2)
    assert backend.abandoned == backend.leases * 2  # and again, for a store that was stalled


async def _warm(limiter: Limiter, route: object, streams: int) -> None:
    """Open ``streams`` pooled connections to the store (each reservation holds one a moment)."""

    async def one() -> None:
        ticket = limiter.ticket(None, route)  # type: ignore[arg-type]
        assert ticket is not None
        await ticket.reserve(Demand())
        ticket.release(None)

    await asyncio.gather(*(one() for _ in range(streams)))


async def test_a_stalled_redis_leaves_no_slot_held_for_nobody(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis stalls, the limiter fails open, then Redis wakes and runs the acquires it was
    sent: without abandoning them, their leases filled the route's slots for 30 s (every
    request a 429 while nothing streamed)."""
    monkeypatch.setattr(limiter_module, "ABANDON_AGAIN_AFTER", (0.3,))
    limits = {"concurrent_streams": 2}
    backend = RedisBackend(redis.url)
    limiter, _, _ = make(limits, backend=backend)
    route = config_from({"routes": [{**ROUTE, "limits": limits}]}).routes[0]
    try:
        await _warm(limiter, route, 2)
        await backend.flush()
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            tickets = [limiter.ticket(None, route) for _ in range(4)]
            await asyncio.gather(*(t.reserve(Demand()) for t in tickets if t is not None))
            assert all(t is not None and t.grant is None for t in tickets)  # failed open
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        await wait_for_leases(backend, 0)
        ticket = limiter.ticket(None, route)
        assert ticket is not None
        await ticket.reserve(Demand())
        assert ticket.grant is not None
        ticket.release(None)
    finally:
        await backend.close()


async def wait_for_leases(backend: RedisBackend, want: int, timeout: float = 5.0) -> None:
    """Poll the route's lease set in Redis until it holds ``want`` leases."""
    client = backend._client  # the store's own view of the slots
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (got := await client.zcard(f"{PREFIX}route:r:streams")) != want:
        assert loop.time() < deadline, f"{got} leases held, {want} wanted"
        await asyncio.sleep(0.05)
