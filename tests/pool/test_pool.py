"""The Pool on the memory store: strategies, caps, rests and probes, refusals, reload, metrics.

Time is a hand-moved clock; nothing sleeps.
"""

from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from gateway.config.pool import STRATEGIES as CONFIG_STRATEGIES
from gateway.config.pool import Cooldown
from gateway.errors import RateLimited, Unavailable, UpstreamError
from gateway.metrics import Metrics
from gateway.pool import Lease, Pool, Refusal
from gateway.pool.memory import MemoryPoolState
from gateway.pool.strategy import EXPLORE_EVERY, STRATEGIES
from tests.pool.helpers import Clock, deployment, pool_config


def make(*deps, clock: Clock | None = None, **kw) -> Pool:  # type: ignore[no-untyped-def]
    return Pool("r", pool_config(*deps, **kw), clock=clock or Clock())


async def pick(pool: Pool, tried: set[str] | None = None) -> Lease:
    lease = await pool.acquire(tried or set())
    assert lease is not None
    return lease


async def shares(pool: Pool, n: int) -> Counter[str]:
    """``n`` one-shot streams (each succeeds at once and ends), counted by deployment."""
    seen: Counter[str] = Counter()
    for _ in range(n):
        lease = await pick(pool)
        lease.succeeded(0.1)
        lease.release()
        seen[lease.name] += 1
    return seen


def test_every_configured_strategy_has_a_class() -> None:
    assert set(STRATEGIES) == set(CONFIG_STRATEGIES)


async def test_round_robin_takes_turns() -> None:
    pool = make(deployment("a"), deployment("b"), deployment("c"))
    names = [(await pick(pool)).name for _ in range(6)]
    assert names == ["a", "b", "c", "a", "b", "c"]


@pytest.mark.parametrize("weights", [(3, 1), (1, 1, 2), (5, 2, 1)])
async def test_weighted_shares_follow_the_weights(weights: tuple[int, ...]) -> None:
    deps = [deployment(f"d{i}", w) for i, w in enumerate(weights)]
    pool = make(*deps, strategy="weighted")
    n = 400
    seen = await shares(pool, n)
    for i, w in enumerate(weights):
        expected = n * w / sum(weights)
        assert abs(seen[f"d{i}"] - expected) <= 0.1 * expected, (seen, weights)


async def test_weighted_skips_a_tried_deployment() -> None:
    pool = make(deployment("a", 9), deployment("b", 1), strategy="weighted")
    assert {(await pick(pool, {"a"})).name for _ in range(5)} == {"b"}


async def test_least_busy_prefers_fewest_open_streams_then_weight() -> None:
    pool = make(deployment("a", 1), deployment("b", 2), deployment("c", 1), strategy="least_busy")
    first = await pick(pool)
    assert first.name == "b"  # all idle: the heaviest
    held = [first, await pick(pool), await pick(pool)]
    assert sorted(x.name for x in held) == ["a", "b", "c"]
    more = await pick(pool)  # one each open: the heaviest again
    assert more.name == "b"
    for lease in held:
        if lease.name == "a":
            lease.release()
    assert (await pick(pool)).name == "a"  # a has none open now


async def test_least_busy_under_held_open_leases_spreads_evenly() -> None:
    pool = make(deployment("a"), deployment("b"), deployment("c"), strategy="least_busy")
    held = [await pick(pool) for _ in range(30)]
    assert Counter(x.name for x in held) == {"a": 10, "b": 10, "c": 10}


async def test_latency_prefers_the_fast_deployment_and_reprobes_the_slow_one() -> None:
    pool = make(deployment("fast"), deployment("slow"), strategy="latency")
    ttft = {"fast": 0.1, "slow": 2.0}

    async def run(n: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(n):
            lease = await pick(pool)
            lease.succeeded(ttft[lease.name])
            lease.release()
            seen[lease.name] += 1
        return seen

    seen = await run(400)
    assert seen["slow"] == 1 + 400 // EXPLORE_EVERY  # measured once, then explored every 20th
    assert seen["fast"] == 400 - seen["slow"]
    ttft["slow"] = 0.05  # the slow one recovered: exploration notices and it wins back
    await run(300)
    seen = await run(100)
    assert seen["fast"] == 100 // EXPLORE_EVERY  # now the fast one is only explored


async def test_latency_measures_unseen_deployments_first() -> None:
    pool = make(deployment("a"), deployment("b"), strategy="latency")
    first = await pick(pool)
    first.succeeded(0.01)
    first.release()
    assert (await pick(pool)).name != first.name


async def test_max_concurrent_is_a_hard_cap() -> None:
    pool = make(deployment("a", cap=2), deployment("b", cap=1), strategy="least_busy")
    held = [await pick(pool) for _ in range(3)]
    assert Counter(x.name for x in held) == {"a": 2, "b": 1}
    refusal = await pool.choose(set())
    assert refusal == Refusal("unavailable")
    assert isinstance(refusal.error(), Unavailable)
    held[0].release()
    held[0].release()  # idempotent: frees one slot only
    assert (await pick(pool)).name == held[0].name
    assert await pool.acquire(set()) is None


async def test_tried_deployments_are_not_offered_again() -> None:
    pool = make(deployment("a"), deployment("b"))
    first = await pick(pool)
    first.failed("connect")
    first.release()
    second = await pick(pool, {first.name})
    assert second.name != first.name
    second.failed("status_5xx")
    second.release()
    refusal = await pool.choose({"a", "b"})
    assert refusal == Refusal("exhausted")
    assert isinstance(refusal.error(), UpstreamError)


async def test_failures_rest_a_deployment_then_one_probe_decides() -> None:
    clock = Clock()
    pool = make(deployment("a"), deployment("b"), clock=clock, cooldown=Cooldown(2, 10.0, 30.0))
    for _ in range(2):
        lease = await pick(pool, {"b"})
        lease.failed("timeout")
        lease.release()
    # a rests: only b for 30 s, even with a held-open b stream
    held_b = await pick(pool)
    assert held_b.name == "b"
    clock.advance(29.9)
    assert (await pick(pool)).name == "b"
    clock.advance(0.2)  # rest over: the next request is a's probe, and only one
    probe = await pick(pool)
    assert (probe.name, probe.probe) == ("a", True)
    assert {(await pick(pool)).name for _ in range(4)} == {"b"}
    probe.succeeded(0.3)
    probe.release()
    names = {(await pick(pool)).name for _ in range(4)}
    assert names == {"a", "b"}


async def test_a_failed_probe_rests_again_for_the_duration() -> None:
    clock = Clock()
    pool = make(deployment("a"), deployment("b"), clock=clock, cooldown=Cooldown(1, 10.0, 20.0))
    lease = await pick(pool, {"b"})
    lease.failed("first_event_timeout")
    lease.release()
    clock.advance(20.5)
    probe = await pick(pool)
    assert probe.probe and probe.name == "a"
    probe.failed("connect")
    probe.release()
    clock.advance(19.0)
    assert {(await pick(pool)).name for _ in range(3)} == {"b"}
    clock.advance(1.5)
    assert (await pick(pool)).probe


async def test_a_429_rests_for_retry_after_capped() -> None:
    clock = Clock()
    pool = make(deployment("a"), deployment("b"), clock=clock)
    lease = await pick(pool, {"b"})
    lease.failed("status_429", retry_after=7.0)
    lease.release()
    assert pool.state.views(["a"])[0].rest_until == clock.now + 7.0
    lease = await pick(pool, {"a"})
    lease.failed("status_429", retry_after=86400.0)
    lease.release()
    assert pool.state.views(["b"])[0].rest_until == clock.now + 300.0  # MAX_RETRY_AFTER


async def test_every_deployment_rate_limited_is_a_429_with_retry_after() -> None:
    clock = Clock()
    pool = make(deployment("a"), deployment("b"), clock=clock)
    for name, wait in (("a", 12.0), ("b", 4.2)):
        lease = await pick(pool, {"a", "b"} - {name})
        lease.failed("status_429", retry_after=wait)
        lease.release()
    refusal = await pool.choose(set())
    assert refusal == Refusal("rate_limited", pytest.approx(4.2))
    error = refusal.error()
    assert isinstance(error, RateLimited) and error.headers == {"Retry-After": "5"}


async def test_every_deployment_resting_tries_the_one_whose_rest_ends_first() -> None:
    clock = Clock()
    pool = make(deployment("a"), deployment("b"), clock=clock, cooldown=Cooldown(1, 10.0, 30.0))
    for name in ("a", "b"):
        lease = await pick(pool, {"a", "b"} - {name})
        lease.failed("connect")
        lease.release()
        clock.advance(5)
    early = await pick(pool)  # a's rest ends 5 s before b's
    assert (early.name, early.probe) == ("a", True)
    refusal = await pool.choose(set())  # one early probe at a time
    assert refusal == Refusal("unavailable", pytest.approx(20.0))
    early.succeeded(0.2)
    early.release()
    assert (await pick(pool)).name == "a"  # back in rotation


async def test_a_probe_abandoned_by_its_client_lets_another_request_probe() -> None:
    clock = Clock()
    pool = make(deployment("a"), deployment("b"), clock=clock, cooldown=Cooldown(1, 10.0, 5.0))
    lease = await pick(pool, {"b"})
    lease.failed("connect")
    lease.release()
    clock.advance(6)
    probe = await pick(pool)
    assert probe.probe
    probe.release()  # client left before the first event
    again = await pick(pool)
    assert (again.name, again.probe) == ("a", True)


async def test_outcome_calls_are_idempotent_and_checked() -> None:
    pool = make()
    lease = await pick(pool)
    with pytest.raises(ValueError, match="unknown failure reason"):
        lease.failed("bad_luck")
    lease.succeeded(0.1)
    lease.failed("connect")  # a verdict was given: ignored
    lease.release()
    lease.release()
    assert pool.state.views([lease.name])[0].active == 0


async def test_carry_from_keeps_state_of_deployments_that_still_exist() -> None:
    clock = Clock()
    old = make(deployment("a"), deployment("b"), clock=clock, cooldown=Cooldown(1, 10.0, 30.0))
    open_b = await pick(old, {"a"})
    lease = await pick(old, {"b"})
    lease.failed("connect")
    lease.release()
    new = Pool("r", pool_config(deployment("b", cap=1), deployment("c")), clock=clock)
    new.carry_from(old)
    views = new.state.views(["b", "c"])
    assert views[0].active == 1 and views[1].active == 0
    assert "a" not in new.state._entries  # gone from the config, nothing open
    assert (await pick(new)).name == "c"  # b is at its new cap of 1
    open_b.release()  # an old lease releases into the carried state
    assert new.state.views(["b"])[0].active == 0


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, labels)
    assert v is not None, (name, labels)
    return v


async def test_metrics_per_deployment() -> None:
    registry = CollectorRegistry()
    clock = Clock()
    recorder = Metrics(registry).pools.route("r", ["a", "b"])
    pool = Pool("r", pool_config(cooldown=Cooldown(1, 10.0, 30.0)), clock=clock, recorder=recorder)
    ab = {"route": "r", "deployment": "a"}
    assert _value(registry, "gateway_deployment_requests_total", **ab, outcome="ok") == 0
    assert _value(registry, "gateway_deployment_resting", **ab) == 0
    lease = await pick(pool, {"b"})
    assert _value(registry, "gateway_deployment_active_streams", **ab) == 1
    lease.succeeded(0.4)
    lease.release()
    assert _value(registry, "gateway_deployment_active_streams", **ab) == 0
    assert _value(registry, "gateway_deployment_requests_total", **ab, outcome="ok") == 1
    assert _value(registry, "gateway_deployment_time_to_first_token_seconds_sum", **ab) == 0.4
    lease = await pick(pool, {"b"})
    lease.failed("status_5xx")
    lease.release()
    assert _value(registry, "gateway_deployment_requests_total", **ab, outcome="status_5xx") == 1
    assert _value(registry, "gateway_deployment_rests_total", **ab, reason="failures") == 1
    assert _value(registry, "gateway_deployment_resting", **ab) == 1
    abandoned = await pick(pool)
    abandoned.release()
    assert (
        _value(
            registry,
            "gateway_deployment_requests_total",
            route="r",
            deployment=abandoned.name,
            outcome="abandoned",
        )
        == 1
    )
    clock.advance(31)  # the rest is over, but "a" is out of rotation until its probe succeeds
    probe = await pick(pool)
    assert probe.probe and _value(registry, "gateway_deployment_resting", **ab) == 1
    probe.succeeded(0.1)  # back in rotation: the gauge says so now, not at the next choice
    assert _value(registry, "gateway_deployment_resting", **ab) == 0
    probe.release()
    await pool.acquire(set())
    assert _value(registry, "gateway_deployment_resting", **ab) == 0


async def test_a_reload_lowers_the_resting_gauge_of_deployments_it_removes() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    clock = Clock()
    config = pool_config(deployment("a"), deployment("b"), cooldown=Cooldown(1, 10.0, 30.0))
    old = Pool("r", config, clock=clock, recorder=metrics.pools.route("r", ["a", "b"]))
    for name in ("a", "b"):
        lease = await pick(old, {"a", "b"} - {name})
        lease.failed("connect")
        lease.release()
    resting = "gateway_deployment_resting"
    assert _value(registry, resting, route="r", deployment="b") == 1
    kept = pool_config(deployment("a"), deployment("c"))
    new = Pool("r", kept, clock=clock, recorder=metrics.pools.route("r", ["a", "c"]))
    new.carry_from(old)
    assert _value(registry, resting, route="r", deployment="b") == 0  # gone: nobody rests
    assert _value(registry, resting, route="r", deployment="a") == 1  # still there, still resting
    assert new.state.views(["a"])[0].rest_until == clock.now + 30.0


async def test_a_removed_deployment_is_forgotten_at_its_last_release() -> None:
    clock = Clock()
    old = make(deployment("a"), deployment("b"), clock=clock, cooldown=Cooldown(1, 10.0, 30.0))
    open_b = await pick(old, {"a"})
    failing = await pick(old, {"a"})
    failing.failed("connect")  # b rests while one of its streams is still open
    failing.release()
    new = Pool("r", pool_config(deployment("a"), deployment("c")), clock=clock)
    new.carry_from(old)
    state = new.state
    assert isinstance(state, MemoryPoolState)
    assert state.resting == 1 and "b" in state._entries  # its open stream releases into it
    open_b.release()
    assert state.resting == 0 and "b" not in state._entries  # back on the calm path
    assert (await pick(new)).name in {"a", "c"}


async def test_round_robin_goes_on_after_the_deployment_a_retry_took() -> None:
    # a fails; the retry must take b (the next in turn), and the next request c: a count-based
    # rotation of the retry's shorter list took c, and c again for the next request.
    pool = make(deployment("a"), deployment("b"), deployment("c"))
    first = await pick(pool)
    assert first.name == "a"
    retry = await pick(pool, {"a"})
    assert retry.name == "b"
    names = [(await pick(pool)).name for _ in range(4)]
    assert names == ["c", "a", "b", "c"]


async def test_least_busy_breaks_ties_in_turn_after_a_retry() -> None:
    pool = make(deployment("a"), deployment("b"), deployment("c"), strategy="least_busy")
    taken = [await pick(pool), await pick(pool, {"a"})]
    assert [lease.name for lease in taken] == ["a", "b"]  # all idle: in turn, a tried
    for lease in taken:
        lease.release()
    assert (await pick(pool)).name == "c"
