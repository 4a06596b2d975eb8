"""One behavioural suite for every limits backend (memory and Redis), on a controlled clock.

Time is passed in (``now``), so window math is exact and nothing sleeps. The Redis cases run
the Lua scripts against a real ``redis-server``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.config.model import RouteLimits
from gateway.limits import Denied, Grant, LimitBackend, MemoryBackend, Scope
from gateway.limits.redis_backend import RedisBackend
from gateway.limits.window import WINDOW
from tests.limits.redis_server import RedisServer

T0 = 1_000_000 * WINDOW  # the start of a window


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[LimitBackend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    server: RedisServer = request.getfixturevalue("redis")
    from redis.asyncio import Redis

    client = Redis.from_url(server.url)
    await client.flushdb()
    await client.aclose()
    b = RedisBackend(server.url)
    yield b
    await b.close()


def scope(name: str = "route:r", **limits: int) -> Scope:
    return Scope(name, RouteLimits(**limits))


async def take(b: LimitBackend, scopes: list[Scope], now: float, tokens: int = 0) -> Grant | Denied:
    return await b.acquire(scopes, tokens, now, f"lease-{now}-{tokens}-{id(scopes)}")


async def release(b: LimitBackend, grant: Grant | Denied, used: int | None, now: float) -> None:
    assert isinstance(grant, Grant)
    b.release(grant, used, now)
    await b.flush()


async def test_requests_per_minute_then_retry_after_is_exact(backend: LimitBackend) -> None:
    s = [scope(requests_per_minute=3)]
    for i in range(3):
        assert isinstance(await take(backend, s, T0 + i), Grant)
    denied = await take(backend, s, T0 + 3)
    assert isinstance(denied, Denied)
    assert (denied.scope, denied.limit) == ("route:r", "requests_per_minute")
    # 3 counted in this window: at elapsed e of the next one they weigh 3 * (60 - e) / 60;
    # one more fits when that is <= 2, at e = 20: 57 s left here + 20 s.
    assert denied.retry_after == pytest.approx(77.0)
    assert isinstance(await take(backend, s, T0 + 3 + 76.9), Denied)
    assert isinstance(await take(backend, s, T0 + 3 + 77.01), Grant)


async def test_previous_window_weighs_by_its_overlap(backend: LimitBackend) -> None:
    s = [scope(requests_per_minute=6)]
    for i in range(6):
        assert isinstance(await take(backend, s, T0 + 10 + i), Grant)
    now = T0 + WINDOW + 30  # half of the previous window still overlaps: it weighs 3
    for _ in range(3):
        assert isinstance(await take(backend, s, now), Grant)
    denied = await take(backend, s, now)
    assert isinstance(denied, Denied)
    assert denied.retry_after == pytest.approx(10.0)  # at elapsed 40 it weighs 2: 2 + 3 + 1
    assert isinstance(await take(backend, s, now + 10.01), Grant)


async def test_a_window_two_back_no_longer_counts(backend: LimitBackend) -> None:
    s = [scope(requests_per_minute=2)]
    for _ in range(2):
        assert isinstance(await take(backend, s, T0 + 59), Grant)
    assert isinstance(await take(backend, s, T0 + WINDOW), Denied)
    for _ in range(2):
        assert isinstance(await take(backend, s, T0 + 2 * WINDOW), Grant)


async def test_concurrent_streams_slot_frees_on_release(backend: LimitBackend) -> None:
    s = [scope(concurrent_streams=2)]
    a, b = await take(backend, s, T0), await take(backend, s, T0 + 1)
    denied = await take(backend, s, T0 + 2)
    assert isinstance(denied, Denied)
    assert (denied.limit, denied.retry_after) == ("concurrent_streams", 1.0)
    await release(backend, a, None, T0 + 3)
    assert isinstance(await take(backend, s, T0 + 4), Grant)
    assert isinstance(b, Grant)


async def test_tokens_are_reserved_then_reconciled_down(backend: LimitBackend) -> None:
    s = [scope(tokens_per_minute=100)]
    first = await take(backend, s, T0, tokens=60)
    assert isinstance(first, Grant)
    denied = await take(backend, s, T0 + 1, tokens=60)
    assert isinstance(denied, Denied) and denied.limit == "tokens_per_minute"
    await release(backend, first, 10, T0 + 2)  # used 10 of the 60 reserved
    assert isinstance(await take(backend, s, T0 + 3, tokens=60), Grant)  # 70
    assert isinstance(await take(backend, s, T0 + 4, tokens=31), Denied)  # 101
    assert isinstance(await take(backend, s, T0 + 5, tokens=30), Grant)  # 100


async def test_tokens_used_beyond_the_reservation_are_charged(backend: LimitBackend) -> None:
    s = [scope(tokens_per_minute=100)]
    grant = await take(backend, s, T0, tokens=10)
    await release(backend, grant, 90, T0 + 1)
    assert isinstance(await take(backend, s, T0 + 2, tokens=11), Denied)
    assert isinstance(await take(backend, s, T0 + 2, tokens=10), Grant)


async def test_unknown_usage_keeps_the_reservation(backend: LimitBackend) -> None:
    s = [scope(tokens_per_minute=100)]
    grant = await take(backend, s, T0, tokens=80)
    await release(backend, grant, None, T0 + 1)
    assert isinstance(await take(backend, s, T0 + 2, tokens=21), Denied)


async def test_a_refund_reaches_the_window_it_was_reserved_in(backend: LimitBackend) -> None:
    s = [scope(tokens_per_minute=100)]
    grant = await take(backend, s, T0 + 59, tokens=100)
    assert isinstance(await take(backend, s, T0 + WINDOW + 1, tokens=50), Denied)
    await release(backend, grant, 0, T0 + WINDOW + 1)  # the stream ended in the next window
    assert isinstance(await take(backend, s, T0 + WINDOW + 2, tokens=100), Grant)


async def test_scopes_are_checked_and_counted_together(backend: LimitBackend) -> None:
    app, route = scope("app:a", requests_per_minute=1), scope("route:r", requests_per_minute=5)
    assert isinstance(await take(backend, [app, route], T0), Grant)
    denied = await take(backend, [app, route], T0 + 1)
    assert isinstance(denied, Denied) and denied.scope == "app:a"
    # The refused request was not counted on the route: 4 more fit there.
    for i in range(4):
        assert isinstance(await take(backend, [route], T0 + 2 + i), Grant)
    assert isinstance(await take(backend, [route], T0 + 7), Denied)


async def test_the_longest_wait_is_reported(backend: LimitBackend) -> None:
    conc, rpm = scope("app:a", concurrent_streams=1), scope("route:r", requests_per_minute=1)
    assert isinstance(await take(backend, [conc, rpm], T0), Grant)
    denied = await take(backend, [conc, rpm], T0 + 1)
    assert isinstance(denied, Denied)
    assert denied.limit == "requests_per_minute" and denied.retry_after > 1


async def test_redis_lease_of_a_vanished_replica_expires(redis: RedisServer) -> None:
    now = [T0]
    crashed = RedisBackend(redis.url, lease_ttl=30, clock=lambda: now[0])
    alive = RedisBackend(redis.url, lease_ttl=30, clock=lambda: now[0])
    s = [scope("route:lease", concurrent_streams=1)]
    try:
        assert isinstance(await take(crashed, s, T0), Grant)  # never released
        assert isinstance(await take(alive, s, T0 + 29), Denied)
        assert isinstance(await take(alive, s, T0 + 30.5), Grant)
    finally:
        crashed.held.clear()
        await crashed.close()
        await alive.close()


async def test_redis_refresh_keeps_a_long_stream_counted(redis: RedisServer) -> None:
    now = [T0]
    b = RedisBackend(redis.url, lease_ttl=30, clock=lambda: now[0])
    s = [scope("route:long", concurrent_streams=1)]
    try:
        grant = await take(b, s, T0)
        now[0] = T0 + 25
        await b.refresh()
        assert isinstance(await take(b, s, T0 + 50), Denied)  # lease now runs to T0 + 55
        await release(b, grant, None, T0 + 51)
        assert isinstance(await take(b, s, T0 + 52), Grant)
    finally:
        b.held.clear()
        await b.close()


async def test_a_cancelled_grant_frees_its_slot_and_gives_back_its_tokens(
    backend: LimitBackend,
) -> None:
    # A request refused after its limits admitted it (by a budget) holds nothing afterwards.
    s = [scope(concurrent_streams=1, tokens_per_minute=100)]
    grant = await take(backend, s, T0, tokens=100)
    assert isinstance(grant, Grant)
    backend.cancel(grant, T0 + 1)
    await backend.flush()
    assert isinstance(await take(backend, s, T0 + 2, tokens=100), Grant)


async def test_a_cancelled_grant_is_not_counted_as_a_request(backend: LimitBackend) -> None:
    s = [scope(requests_per_minute=1)]
    grant = await take(backend, s, T0 + 59)
    assert isinstance(grant, Grant)
    backend.cancel(grant, T0 + WINDOW + 1)  # refused in the next window: un-counted from prev
    await backend.flush()
    assert isinstance(await take(backend, s, T0 + WINDOW + 2), Grant)
    assert isinstance(await take(backend, s, T0 + WINDOW + 3), Denied)


async def test_abandoning_a_lease_never_taken_frees_no_one_elses_slot(
    backend: LimitBackend,
) -> None:
    s = [scope("route:abandon", concurrent_streams=1, requests_per_minute=5)]
    assert isinstance(await backend.acquire(s, 0, T0, "held"), Grant)
    backend.abandon(s, "never-taken", T0 + 1)
    await backend.flush()
    assert isinstance(await take(backend, s, T0 + 2), Denied)


async def test_redis_abandon_frees_the_slot_of_an_acquire_whose_answer_was_lost(
    redis: RedisServer,
) -> None:
    """The script ran (a stalled Redis woke up), but the limiter had given up on its answer."""
    b = RedisBackend(redis.url)
    s = [scope("route:lost", concurrent_streams=1)]
    try:
        assert isinstance(await b.acquire(s, 0, T0, "lost"), Grant)
        b.held.clear()  # the limiter never saw the grant: nothing refreshes or releases it
        assert isinstance(await take(b, s, T0 + 1), Denied)
        b.abandon(s, "lost", T0 + 2)
        await b.flush()
        assert isinstance(await take(b, s, T0 + 3), Grant)
    finally:
        b.held.clear()
        await b.close()


async def test_redis_background_calls_after_close_open_no_new_connection(
    redis: RedisServer,
) -> None:
    """A limiter's late abandon (timers of 5 s and 20 s) may fire after a reload closed the
    backend: it is dropped, not run on a fresh connection nobody will close."""
    b = RedisBackend(redis.url)
    s = [scope("route:closed", concurrent_streams=1)]
    assert isinstance(await b.acquire(s, 0, T0, "first"), Grant)
    b.held.clear()
    await b.close()
    b.abandon(s, "first", T0 + 1)
    assert b._client is None
    assert not b._tasks
