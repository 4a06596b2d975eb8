"""One behavioural suite for every pool state store (memory and Redis), on a controlled clock.

The Redis cases run the Lua scripts against a real ``redis-server`` on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.config.pool import Cooldown
from gateway.pool.memory import MemoryPoolState
from gateway.pool.redis_state import RedisPoolState
from gateway.pool.state import Candidate, PoolState, Taken
from tests.limits.redis_server import RedisServer

T0 = 1_800_000_000.0
COOL = Cooldown(failures=3, window=60.0, duration=30.0)


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[PoolState]:
    if request.param == "memory":
        yield MemoryPoolState()
        return
    server: RedisServer = request.getfixturevalue("redis")
    from redis.asyncio import Redis

    client = Redis.from_url(server.url)
    await client.flushdb()
    await client.aclose()
    s = RedisPoolState(server.url, "r")
    yield s
    await s.close()


async def take(s: PoolState, *cands: Candidate, now: float = T0) -> tuple[str, Taken | None]:
    lease = s.new_lease_id()
    return lease, await s.take(cands, lease, now)


async def view(s: PoolState, name: str, now: float = T0):  # type: ignore[no-untyped-def]
    await s.flush()
    (v,) = await s.snapshot([name], now)
    return v


async def test_take_counts_and_release_frees(state: PoolState) -> None:
    l1, t1 = await take(state, Candidate("a"))
    l2, t2 = await take(state, Candidate("a"))
    assert t1 == Taken("a", False) and t2 == Taken("a", False)
    assert (await view(state, "a")).active == 2
    state.release("a", l1)
    assert (await view(state, "a")).active == 1
    state.release("a", l2)
    assert (await view(state, "a")).active == 0


async def test_cap_is_a_hard_limit_and_the_next_candidate_is_taken(state: PoolState) -> None:
    await take(state, Candidate("a", cap=2))
    await take(state, Candidate("a", cap=2))
    _, third = await take(state, Candidate("a", cap=2), Candidate("b", cap=1))
    assert third == Taken("b", False)
    _, fourth = await take(state, Candidate("a", cap=2), Candidate("b", cap=1))
    assert fourth is None


async def test_failures_within_the_window_rest_then_one_probe(state: PoolState) -> None:
    rests: list[tuple[str, str]] = []
    state.on_rest = lambda name, reason: rests.append((name, reason))
    for i in range(2):
        lease, _ = await take(state, Candidate("a"))
        state.failed("a", lease, T0 + i, COOL)
    assert (await view(state, "a", T0 + 2)).rest_until == 0
    lease, _ = await take(state, Candidate("a"), now=T0 + 2)
    state.failed("a", lease, T0 + 2, COOL)
    v = await view(state, "a", T0 + 2)
    assert (v.rest_until, v.rest_reason) == (T0 + 32, "failures")
    assert rests == [("a", "failures")]
    # resting: not taken (not even an early probe unless asked)
    assert (await take(state, Candidate("a"), now=T0 + 31.9))[1] is None
    assert (await take(state, Candidate("a", early=True), now=T0 + 31.9))[1] == Taken("a", True)


async def test_failures_outside_the_window_do_not_add_up(state: PoolState) -> None:
    for t in (0.0, 30.0, 61.0, 90.0):  # at most two of them within any 60 s
        lease, _ = await take(state, Candidate("a"), now=T0 + t)
        state.failed("a", lease, T0 + t, COOL)
    assert (await view(state, "a", T0 + 90)).rest_until == 0


async def test_exactly_one_probe_when_the_rest_ends(state: PoolState) -> None:
    lease, _ = await take(state, Candidate("a"))
    state.failed("a", lease, T0, COOL, rest=10.0, reason="status_429")
    await state.flush()
    after = T0 + 10.5
    probe_lease, probe = await take(state, Candidate("a"), now=after)
    assert probe == Taken("a", True)
    assert (await view(state, "a", after)).probing
    assert (await take(state, Candidate("a"), now=after))[1] is None
    state.succeeded("a", probe_lease, 0.2)
    v = await view(state, "a", after)
    assert (v.rest_until, v.probing, v.ewma) == (0.0, False, pytest.approx(0.2))
    assert (await take(state, Candidate("a"), now=after))[1] == Taken("a", False)


async def test_a_failed_probe_rests_again(state: PoolState) -> None:
    rests: list[tuple[str, str]] = []
    state.on_rest = lambda name, reason: rests.append((name, reason))
    lease, _ = await take(state, Candidate("a"))
    state.failed("a", lease, T0, COOL, rest=5.0, reason="status_429")
    await state.flush()
    probe_lease, probe = await take(state, Candidate("a"), now=T0 + 6)
    assert probe is not None and probe.probe
    state.failed("a", probe_lease, T0 + 6, COOL)  # one failure of the probe is enough
    v = await view(state, "a", T0 + 6)
    assert (v.rest_until, v.rest_reason, v.probing) == (T0 + 36, "probe_failed", False)
    assert rests == [("a", "status_429"), ("a", "probe_failed")]


async def test_a_probe_released_without_verdict_frees_the_claim(state: PoolState) -> None:
    lease, _ = await take(state, Candidate("a"))
    state.failed("a", lease, T0, COOL, rest=5.0, reason="status_429")
    await state.flush()
    probe_lease, probe = await take(state, Candidate("a"), now=T0 + 6)
    assert probe is not None and probe.probe
    state.release("a", probe_lease)
    await state.flush()
    _, again = await take(state, Candidate("a"), now=T0 + 6)
    assert again == Taken("a", True)


async def test_a_rest_is_never_shortened(state: PoolState) -> None:
    lease, _ = await take(state, Candidate("a"))
    state.failed("a", lease, T0, COOL, rest=100.0, reason="status_429")
    await state.flush()
    lease, _ = await take(state, Candidate("a", early=True))
    state.failed("a", lease, T0 + 1, COOL, rest=2.0, reason="status_429")
    assert (await view(state, "a", T0 + 1)).rest_until == T0 + 100


async def test_ewma_follows_recent_ttft(state: PoolState) -> None:
    for ttft in (1.0, 1.0, 0.1, 0.1, 0.1, 0.1):
        lease, _ = await take(state, Candidate("a"))
        state.succeeded("a", lease, ttft)
        state.release("a", lease)
        await state.flush()
    ewma = (await view(state, "a")).ewma
    assert ewma is not None and 0.1 < ewma < 0.35
