"""Two Pool instances (two replicas) sharing one real ``redis-server``; Redis killed mid-run."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from gateway.config.model import GatewayConfig, LimitsConfig, RouteConfig, ServerConfig
from gateway.config.pool import Cooldown, Deployment
from gateway.limits.base import BackendError
from gateway.pool import Lease, Pool, Refusal, build_pools
from gateway.pool.pool import CHOICE_WAIT
from gateway.pool.redis_state import RedisPoolState
from tests.limits.redis_server import RedisServer, redis_server
from tests.pool.helpers import Clock, deployment, pool_config


@pytest.fixture
async def flushed(redis: RedisServer) -> AsyncIterator[RedisServer]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis.url)
    await client.flushdb()
    await client.aclose()
    yield redis


def replica(  # type: ignore[no-untyped-def]
    url: str,
    clock: Clock,
    *deps: Deployment,
    mode: Literal["open", "closed"] = "open",
    errors: list[Exception] | None = None,
    **kw,
) -> Pool:
    on_error = None if errors is None else errors.append
    return Pool(
        "r",
        pool_config(*deps, **kw),
        RedisPoolState(url, "r", on_error=on_error, clock=clock),
        on_backend_error=mode,
        on_error=on_error,
        clock=clock,
    )


async def settle(*pools: Pool) -> None:
    for pool in pools:
        await pool.state.flush()


@pytest.mark.parametrize(
    ("strategy", "weights", "expected"),
    [
        ("round_robin", (1, 1, 1), {"a": 10, "b": 10, "c": 10}),
        ("weighted", (3, 1, 1), {"a": 18, "b": 6, "c": 6}),
        ("least_busy", (1, 1, 1), {"a": 10, "b": 10, "c": 10}),
    ],
)
async def test_a_concurrent_burst_is_spread_as_the_strategy_says(
    flushed: RedisServer, strategy: str, weights: tuple[int, ...], expected: dict[str, int]
) -> None:
    """Thirty streams at once on one replica (all held open): they used to read the same counts
    and the same turn, and all took the first deployment."""
    deps = [deployment(name, weight=w) for name, w in zip("abc", weights, strict=True)]
    pool = replica(flushed.url, Clock(), *deps, strategy=strategy)
    leases = await asyncio.gather(*(pool.acquire(set()) for _ in range(30)))
    assert all(lease is not None for lease in leases)
    assert Counter(lease.name for lease in leases if lease is not None) == expected
    await pool.state.close()


async def test_choices_do_not_queue_behind_a_hanging_store(
    flushed: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each choice waits for its own store call, not for those of the choices before it."""
    pool = replica(flushed.url, Clock(), deployment("a"), deployment("b"))

    async def hanging(*_: object) -> None:
        await asyncio.sleep(0.5)
        raise BackendError("limits backend: TimeoutError")

    monkeypatch.setattr(pool.state, "snapshot", hanging)
    loop = asyncio.get_running_loop()
    start = loop.time()
    leases = await asyncio.gather(*(pool.acquire(set()) for _ in range(6)))
    assert all(lease is not None for lease in leases)  # fail open: the process's own state
    assert loop.time() - start < 0.5 + CHOICE_WAIT + 0.5  # not 6 x 0.5 s
    await pool.state.close()


async def test_max_concurrent_holds_across_replicas(flushed: RedisServer) -> None:
    clock = Clock()
    deps = (deployment("a", cap=3), deployment("b", cap=2))
    one = replica(flushed.url, clock, *deps, strategy="least_busy")
    two = replica(flushed.url, clock, *deps, strategy="least_busy")
    held: list[Lease] = []
    for i in range(5):
        lease = await (one if i % 2 else two).acquire(set())
        assert lease is not None
        held.append(lease)
    assert Counter(x.name for x in held) == {"a": 3, "b": 2}
    assert await one.choose(set()) == Refusal("unavailable")
    assert await two.choose(set()) == Refusal("unavailable")
    held[0].release()  # freed by the replica that took it: the other one can use the slot
    await settle(one, two)
    other = two if held[0].pool is one else one
    again = await other.acquire(set())
    assert again is not None and again.name == held[0].name
    for lease in [*held, again]:
        lease.release()
    await settle(one, two)
    for p in (one, two):
        await p.close()


async def test_a_rest_started_by_one_replica_holds_on_the_other(flushed: RedisServer) -> None:
    clock = Clock()
    one = replica(flushed.url, clock, cooldown=Cooldown(2, 60.0, 30.0))
    two = replica(flushed.url, clock, cooldown=Cooldown(2, 60.0, 30.0))
    for pool in (one, two):  # one failure each: together they reach the threshold
        lease = await pool.acquire({"b"})
        assert lease is not None and lease.name == "a"
        lease.failed("status_5xx")
        lease.release()
        await settle(pool)
    assert {(await two.acquire(set())).name for _ in range(4)} == {"b"}  # type: ignore[union-attr]
    clock.advance(30.5)
    probes = [await p.acquire({"b"}) for p in (one, two)]
    assert probes[0] is not None and probes[0].probe  # exactly one probe, across replicas
    assert probes[1] is None
    probes[0].succeeded(0.2)
    probes[0].release()
    await settle(one)
    back = await two.acquire({"b"})
    assert back is not None and back.name == "a" and not back.probe
    for p in (one, two):
        await p.close()


async def test_a_crashed_replica_leases_expire(flushed: RedisServer) -> None:
    clock = Clock()
    deps = (deployment("a", cap=1), deployment("b", cap=1))
    one = replica(flushed.url, clock, *deps)
    held = [await one.acquire(set()) for _ in range(2)]
    assert all(held)
    # the replica dies (no release, no refresh): another one sees the slots free after lease_ttl
    two = replica(flushed.url, clock, *deps)
    assert await two.acquire(set()) is None
    clock.advance(31)
    assert await two.acquire(set()) is not None
    for p in (one, two):
        await p.close()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_redis_killed_mid_run(tmp_path: Path, mode: Literal["open", "closed"]) -> None:
    clock = Clock()
    errors: list[Exception] = []
    with redis_server(tmp_path) as server:
        pool = replica(server.url, clock, mode=mode, errors=errors)
        before = await pool.acquire(set())
        assert before is not None
        server.kill()
        choice = await pool.choose(set())
        before.release()  # its write fails in the background: reported, never raised
        await settle(pool)
        assert errors  # every failure reached the reporter
        if mode == "closed":
            assert choice == Refusal("backend")
            assert choice.error().http_status == 503
        else:
            assert isinstance(choice, Lease)
            # balancing goes on in this process's memory, caps and rests included
            choice.failed("connect")
            choice.release()
            names = [(await pool.acquire(set())) for _ in range(3)]
            assert all(names)
            assert sum(v.active for v in pool.fallback.views(["a", "b"])) == 3
        await pool.close()


async def test_build_pools_uses_the_limits_backend_and_carries_state(flushed: RedisServer) -> None:
    route = RouteConfig("r", "/v1/stream/r", "tokens", deployment("a").target, pool=pool_config())
    plain = RouteConfig("s", "/v1/stream/s", "tokens", deployment("a").target)
    config = GatewayConfig(
        ServerConfig(), (route, plain), limits=LimitsConfig("redis", flushed.url)
    )
    pools = build_pools(config)
    assert list(pools) == ["r"] and isinstance(pools["r"].state, RedisPoolState)
    lease = await pools["r"].acquire(set())
    assert lease is not None
    again = build_pools(config, previous=pools)
    assert again["r"].state is pools["r"].state  # same store, same connection
    memory = build_pools(GatewayConfig(ServerConfig(), (route,)), previous=pools)
    assert not isinstance(memory["r"].state, RedisPoolState)  # a backend change starts afresh
    lease.release()
    await pools["r"].close()


async def connections(url: str) -> int:
    """The connections redis-server holds, the one asking excluded."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        return len(await client.client_list()) - 1
    finally:
        await client.aclose()


@pytest.mark.parametrize("change", ["route removed", "backend changed"])
async def test_a_store_no_pool_takes_over_is_closed_after_its_last_lease(
    flushed: RedisServer, change: str
) -> None:
    """A reload that removed a pooled route, or moved it to another backend, left its Redis
    store (a connection and a lease refresher) open until the process exited. It closes once
    the streams it still counts have ended, also across a reload that carried it on first."""
    route = RouteConfig("r", "/v1/stream/r", "tokens", deployment("a").target, pool=pool_config())
    plain = RouteConfig("s", "/v1/stream/s", "tokens", deployment("a").target)
    redis = LimitsConfig("redis", flushed.url)
    before = await connections(flushed.url)
    first = build_pools(GatewayConfig(ServerConfig(), (route,), limits=redis))
    lease = await first["r"].acquire(set())
    assert isinstance(lease, Lease)
    second = build_pools(GatewayConfig(ServerConfig(), (route,), limits=redis), previous=first)
    assert second["r"].state is first["r"].state  # carried on
    routes = (plain,) if change == "route removed" else (route,)
    limits = redis if change == "route removed" else LimitsConfig()
    third = build_pools(GatewayConfig(ServerConfig(), routes, limits=limits), previous=second)
    await asyncio.sleep(0.05)
    assert await connections(flushed.url) > before  # the first generation's lease is open
    lease.release()
    for _ in range(100):
        if await connections(flushed.url) == before:
            break
        await asyncio.sleep(0.02)
    assert await connections(flushed.url) == before
    for pool in third.values():
        await pool.close()
