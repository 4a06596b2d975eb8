"""Spending budgets (gateway/limits/budget.py) on every backend, on a controlled clock.

The Redis cases run the Lua scripts against a real ``redis-server`` (skipped without one unless
``GATEWAY_REQUIRE_SYSTEM_TESTS=1``).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.config.accounting import Budget, PriceOverride
from gateway.config.model import (
    AppKey,
    GatewayConfig,
    LimitsConfig,
    RouteConfig,
    ServerConfig,
    UpstreamConfig,
    UpstreamTarget,
)
from gateway.errors import BudgetExceeded, Unavailable
from gateway.limits import MemoryBackend
from gateway.limits import budget as budget_module
from gateway.limits.base import BackendError
from gateway.limits.budget import NANO, Budgets, BudgetStore, Hold, to_nano, worst_case_usd
from gateway.limits.redis_backend import RedisBackend
from gateway.metrics import Metrics
from gateway.pricing import Pricer
from tests.limits.redis_server import RedisServer

HOUR = 3600
T0 = 1_000_000 * HOUR  # the start of an hour
WEB = AppKey("web", "k1", budget=Budget(1.0, "1h"))
CLI = AppKey("cli", "k2", budget=Budget(1.0, "1h"))
FREE = AppKey("free", "k3")


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(on_error: str = "open") -> GatewayConfig:
    return GatewayConfig(
        server=ServerConfig(),
        routes=(),
        limits=LimitsConfig(on_backend_error=on_error),  # type: ignore[arg-type]
    )


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    server: RedisServer = request.getfixturevalue("redis")
    from redis.asyncio import Redis

    client = Redis.from_url(server.url)
    await client.flushdb()
    await client.aclose()
    backend = RedisBackend(server.url)
    yield backend
    await backend.close()


def budgets(store: Any, clock: Clock, errors: list[Exception] | None = None, **kw: Any) -> Budgets:
    report: Callable[[Exception], None] = (errors if errors is not None else []).append
    return Budgets(config(**kw), store, report, clock)


async def settle(b: Budgets, hold: Hold | None, usd: float | None) -> None:
    b.settle(hold, usd)
    flush = getattr(b.store, "flush", None)
    if flush is not None:
        await flush()


async def test_spend_up_to_the_limit_then_refused_until_the_period_ends(store: Any) -> None:
    clock = Clock(T0 + 1000.4)
    b = budgets(store, clock)
    for _ in range(2):
        hold = await b.reserve(WEB, 0.5)
        await settle(b, hold, 0.4)
    assert await b.remaining(WEB) == pytest.approx(0.2, abs=1e-9)
    hold = await b.reserve(WEB, 0.2)  # exactly the rest: admitted
    await settle(b, hold, 0.2)
    with pytest.raises(BudgetExceeded) as info:
        await b.reserve(WEB, 0.01)
    err = info.value
    assert (err.http_status, err.error_code, err.retryable) == (429, "budget_exceeded", True)
    assert err.headers["Retry-After"] == str(HOUR - 1000)  # 2599.6 s left, rounded up
    assert "web" in err.message


async def test_reservations_count_until_settled(store: Any) -> None:
    b = budgets(store, Clock())
    first = await b.reserve(WEB, 0.5)
    await b.reserve(WEB, 0.5)
    with pytest.raises(BudgetExceeded):
        await b.reserve(WEB, 0.1)
    await settle(b, first, 0.1)  # the real cost replaces the worst case
    assert await b.remaining(WEB) == pytest.approx(0.4, abs=1e-9)
    assert await b.reserve(WEB, 0.4) is not None


async def test_the_period_rolls_and_the_budget_is_whole_again(store: Any) -> None:
    clock = Clock(T0 + HOUR - 5)
    b = budgets(store, clock)
    await settle(b, await b.reserve(WEB, 1.0), 1.0)
    with pytest.raises(BudgetExceeded) as info:
        await b.reserve(WEB, 0.001)
    assert info.value.headers["Retry-After"] == "5"
    clock.now = T0 + HOUR
    assert await b.remaining(WEB) == 1.0
    assert await b.reserve(WEB, 0.9) is not None


async def test_a_stream_crossing_the_period_end_charges_the_new_period(store: Any) -> None:
    clock = Clock(T0 + HOUR - 1)
    b = budgets(store, clock)
    hold = await b.reserve(WEB, 0.8)
    clock.now = T0 + HOUR + 1
    await settle(b, hold, 0.3)
    assert await b.remaining(WEB) == pytest.approx(0.7, abs=1e-9)


async def test_other_keys_are_unaffected(store: Any) -> None:
    b = budgets(store, Clock())
    await settle(b, await b.reserve(WEB, 1.0), 1.0)
    with pytest.raises(BudgetExceeded):
        await b.reserve(WEB, 0.1)
    assert await b.reserve(CLI, 1.0) is not None
    assert await b.reserve(FREE, 100.0) is None  # no budget: nothing to hold
    assert await b.remaining(FREE) is None


async def test_unknown_price_is_admitted_until_the_budget_is_used_up(store: Any) -> None:
    b = budgets(store, Clock())
    hold = await b.reserve(WEB, None)
    assert hold is not None and hold.amount == 0
    await settle(b, await b.reserve(WEB, 1.0), 1.0)
    with pytest.raises(BudgetExceeded):
        await b.reserve(WEB, None)


async def test_settle_without_cost_charges_the_reservation_once(store: Any) -> None:
    b = budgets(store, Clock())
    hold = await b.reserve(WEB, 0.25)
    await settle(b, hold, None)
    await settle(b, hold, 0.9)  # a second settlement does nothing
    assert await b.remaining(WEB) == pytest.approx(0.75, abs=1e-9)


async def test_a_task_ending_without_settling_settles_with_the_reservation(store: Any) -> None:
    b = budgets(store, Clock())
    holds: list[Hold | None] = []

    async def handler() -> None:
        holds.append(await b.reserve(WEB, 0.3))
        raise asyncio.CancelledError  # as a client abort would

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(handler())
    await asyncio.sleep(0)
    hold = holds[0]
    assert hold is not None and hold.settled
    flush = getattr(store, "flush", None)
    if flush is not None:
        await flush()
    assert await b.remaining(WEB) == pytest.approx(0.7, abs=1e-9)


async def test_the_remaining_gauge_follows_reservations_and_settlements(store: Any) -> None:
    metrics = Metrics()
    b = Budgets(config(), store, [].append, Clock(), metrics.accounting)
    hold = await b.reserve(WEB, 0.6)

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("gateway_budget_remaining_usd", {"app": "web"})

    assert gauge() == pytest.approx(0.4)
    await settle(b, hold, 0.1)
    assert gauge() == pytest.approx(0.9)


class BrokenStore:
    def __init__(self) -> None:
        self.holds: list[str] = []
        self.settled: list[tuple[Any, ...]] = []

    async def budget_reserve(self, *args: Any) -> tuple[bool, int]:
        self.holds.append(args[-1])
        raise BackendError("limits backend: ConnectionError")

    def budget_settle(self, *args: Any) -> None:
        self.settled.append(args)

    async def budget_used(self, *args: Any) -> int:
        raise BackendError("limits backend: ConnectionError")


async def test_backend_failure_fails_open_or_closed_as_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(budget_module, "UNDO_AFTER", (0.05,))
    errors: list[Exception] = []
    broken = BrokenStore()
    store: BudgetStore = broken
    assert await budgets(store, Clock(), errors, on_error="open").reserve(WEB, 0.1) is None
    with pytest.raises(Unavailable) as info:
        await budgets(store, Clock(), errors, on_error="closed").reserve(WEB, 0.1)
    assert info.value.http_status == 503 and info.value.headers["Retry-After"] == "1"
    assert len(errors) == 2
    # Each failed reservation is undone by its id (real cost 0), at once and once more later.
    assert len(set(broken.holds)) == 2
    await asyncio.sleep(0.1)
    index = T0 // HOUR
    undo = [(args[1], args[2], args[3], args[4], args[7]) for args in broken.settled]
    amount = to_nano(0.1)
    assert sorted(undo) == sorted([(index, amount, index, 0, hold) for hold in broken.holds] * 2)


@pytest.mark.parametrize("how", ["gave_up", "client_left"])
async def test_a_reservation_a_stalled_redis_makes_after_the_call_ended_is_undone(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The call to a stalled Redis ends without a hold to settle: the gateway gives up (503 or
    fail-open), or the client goes away (its task cancelled). The script it sent runs when
    Redis wakes: that reservation would hold budget for the rest of the period."""
    monkeypatch.setattr(budget_module, "UNDO_AFTER", (0.5,))
    await flush_redis(redis)
    backend = RedisBackend(redis.url)
    try:
        b = budgets(backend, Clock(T0 + 10))
        await settle(b, await b.reserve(WEB, 0.1), 0.1)  # a pooled connection, used once
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            if how == "gave_up":
                assert await b.reserve(WEB, 0.4) is None  # failed open after the timeout
            else:
                reserving = asyncio.ensure_future(b.reserve(WEB, 0.4))
                await asyncio.sleep(0.2)  # the reservation is on the wire
                reserving.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await reserving
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        await asyncio.sleep(1.0)  # the undo at 0.5 s runs after Redis ran the reservation
        assert await b.remaining(WEB) == pytest.approx(0.9, abs=1e-9)
    finally:
        await backend.close()


async def test_a_reservation_in_redis_is_removed_once_however_often_it_is_settled(
    redis: RedisServer,
) -> None:
    """By its id: an undo racing the stream's own settlement cannot take off another
    stream's reservation."""
    await flush_redis(redis)
    backend = RedisBackend(redis.url)
    try:
        b = budgets(backend, Clock(T0 + 10))
        first, second = await b.reserve(WEB, 0.5), await b.reserve(WEB, 0.25)
        assert first is not None and second is not None
        for _ in range(3):
            backend.budget_settle(first.scope, first.index, first.amount, first.index, 0, 60)
            backend.budget_settle(
                first.scope, first.index, first.amount, first.index, 0, 60, None, first.id
            )
        await backend.flush()
        assert await b.remaining(WEB) == pytest.approx(0.75, abs=1e-9)  # the second's stands
    finally:
        await backend.close()


async def flush_redis(server: RedisServer) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(server.url)
    await client.flushdb()
    await client.aclose()


async def test_two_redis_backends_share_one_budget(redis: RedisServer) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis.url)
    await client.flushdb()
    await client.aclose()
    a, b = RedisBackend(redis.url), RedisBackend(redis.url)
    try:
        clock = Clock(T0 + 10)
        replica_a, replica_b = budgets(a, clock), budgets(b, clock)
        hold = await replica_a.reserve(WEB, 0.7)
        with pytest.raises(BudgetExceeded):
            await replica_b.reserve(WEB, 0.5)  # A's reservation is visible to B
        await settle(replica_a, hold, 0.2)
        assert await replica_b.remaining(WEB) == pytest.approx(0.8, abs=1e-9)
        await settle(replica_b, await replica_b.reserve(WEB, 0.8), 0.8)
        with pytest.raises(BudgetExceeded):
            await replica_a.reserve(WEB, 0.01)
        # Concurrent reservations never overshoot: 20 of 0.1 against a fresh key's 1.0.
        fresh = AppKey("fresh", "k9", budget=Budget(1.0, "1h"))
        results = await asyncio.gather(
            *(r.reserve(fresh, 0.1) for r in [replica_a, replica_b] * 10), return_exceptions=True
        )
        assert sum(isinstance(x, Hold) for x in results) == 10
        assert sum(isinstance(x, BudgetExceeded) for x in results) == 10
    finally:
        await a.close()
        await b.close()


def test_to_nano_rounds_up_and_is_exact_for_small_costs() -> None:
    assert to_nano(1.0) == NANO
    assert to_nano(1e-9) == 1
    assert to_nano(1.5e-9) == 2
    assert to_nano(0.0) == 0


def target(provider: str, model: str) -> UpstreamTarget:
    return UpstreamTarget(provider, UpstreamConfig(model=model))


def test_worst_case_is_the_dearest_target_with_a_known_price() -> None:
    route = RouteConfig(
        name="r",
        path="/r",
        format="tokens",
        primary=target("cheap", "small"),
        fallbacks=(target("dear", "big"), target("cheap", "unpriced")),
    )
    pricer = Pricer(
        [PriceOverride("small", 1.0, 2.0, 1.0, 1.0), PriceOverride("big", 3.0, 15.0, 3.0, 3.0)],
        {"cheap": None, "dear": None},
    )
    got = worst_case_usd(pricer, route, None, 1_000, 500, body_bytes=400)
    assert got == pytest.approx((100 * 3.0 + 1_000 * 15.0) / 1e6)
    default = worst_case_usd(pricer, route, None, None, 500, body_bytes=400)
    assert default == pytest.approx((100 * 3.0 + 500 * 15.0) / 1e6)
    # The primary's override is unpriced; the fallback is not (10 bytes: 3 input tokens).
    unknown = worst_case_usd(pricer, route, "nothing-known", 10, 10, 10)
    assert unknown == pytest.approx((3 * 3.0 + 10 * 15.0) / 1e6)
    alone = RouteConfig(name="a", path="/a", format="tokens", primary=target("cheap", "big"))
    override = worst_case_usd(pricer, alone, "small", 1_000, 500, body_bytes=400)
    assert override == pytest.approx((100 * 1.0 + 1_000 * 2.0) / 1e6)
    assert worst_case_usd(pricer, alone, "nothing-known", 10, 10, 10) is None


def test_a_model_override_is_priced_for_the_primary_only() -> None:
    # A fallback never gets the request's model (build_attempts sends it its own configured
    # one), so its worst case is its own model's: a cheap override must not hide a dear fallback.
    route = RouteConfig(
        name="r",
        path="/r",
        format="tokens",
        primary=target("cheap", "configured"),
        fallbacks=(target("dear", "big"),),
    )
    pricer = Pricer(
        [PriceOverride("small", 0.1, 0.1, 0.1, 0.1), PriceOverride("big", 100.0, 100.0, 1.0, 1.0)],
        {"cheap": None, "dear": None},
    )
    got = worst_case_usd(pricer, route, "small", 1_000, 500, body_bytes=400)
    assert got == pytest.approx((100 + 1_000) * 100.0 / 1e6)
