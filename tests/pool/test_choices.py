"""``gateway.stream.choices``: a pooled stream's attempts, verdicts and final error; and the
pools a config state builds (carried over on reload)."""

from __future__ import annotations

from typing import Any, cast

from gateway.config.model import UpstreamConfig, UpstreamTarget
from gateway.errors import (
    EarlyError,
    RateLimited,
    Unavailable,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from gateway.metrics import Metrics
from gateway.pool import Pool
from gateway.state import build_state
from gateway.stream.attempts import Attempt
from gateway.stream.choices import InOrder, Pooled, failure_reason
from tests.pool.helpers import Clock, deployment, pool_config
from tests.support.gateway import config_from


def attempt(target: UpstreamTarget) -> Attempt:
    return Attempt(target, cast(Any, None), cast(Any, None))


def pooled(pool: Pool, fallbacks: int = 0) -> Pooled:
    attempts = [attempt(d.target) for d in pool.deployments]
    attempts += [
        attempt(UpstreamTarget("p", UpstreamConfig(f"http://fb{i}.test"))) for i in range(fallbacks)
    ]
    return Pooled(pool, attempts)


def status(code: int, retry_after: float | None = None) -> UpstreamStatusError:
    return UpstreamStatusError(code, f"upstream answered {code}", retry_after=retry_after)


async def test_each_deployment_once_then_the_fallbacks_then_the_last_error() -> None:
    pool = Pool("r", pool_config(), clock=Clock())
    choices = pooled(pool, fallbacks=1)
    seen = []
    while (a := await choices.next()) is not None:
        seen.append((a.target.deployment, choices.leased, choices.final))
        choices.failed(status(500), None)
    assert seen == [("a", True, False), ("b", True, False), (None, False, True)]
    last = UpstreamError("fallback failed", retryable=True)
    assert choices.error(last) is last


async def test_a_lease_is_held_until_the_next_attempt_or_close() -> None:
    pool = Pool("r", pool_config(deployment("a", cap=1), deployment("b", cap=1)), clock=Clock())
    one = pooled(pool)
    assert (await one.next()) is not None
    two = pooled(pool)
    assert (await two.next()) is not None
    three = pooled(pool)
    assert await three.next() is None  # both slots are held
    assert isinstance(three.error(None), Unavailable)
    one.close()
    one.close()  # idempotent
    four = pooled(pool)
    assert (await four.next()) is not None


async def test_every_deployment_rate_limited_is_a_429() -> None:
    pool = Pool("r", pool_config(), clock=Clock())
    choices = pooled(pool)
    while await choices.next() is not None:
        choices.failed(status(429, 12.0), None)
    assert isinstance(choices.error(status(429, 12.0)), RateLimited)
    refused = pooled(pool)
    assert await refused.next() is None
    err = refused.error(None)
    assert isinstance(err, RateLimited) and err.headers == {"Retry-After": "12"}


async def test_only_the_last_deployment_without_fallbacks_is_final() -> None:
    pool = Pool("r", pool_config(), clock=Clock())
    choices = pooled(pool)
    await choices.next()
    assert not choices.final
    await choices.next()
    assert choices.final


async def test_in_order_is_the_plain_list() -> None:
    targets = [UpstreamTarget("p", UpstreamConfig(f"http://{n}.test")) for n in "xy"]
    choices = InOrder([attempt(t) for t in targets])
    got = []
    while (a := await choices.next()) is not None:
        got.append((a.target.upstream.base_url, choices.final, choices.leased))
    assert got == [("http://x.test", False, False), ("http://y.test", True, False)]


def test_failure_reasons() -> None:
    assert failure_reason(status(429), None) == "status_429"
    assert failure_reason(status(503), None) == "status_5xx"
    assert failure_reason(status(400), None) is None  # the request's fault
    assert failure_reason(UpstreamTimeout("slow"), None) == "timeout"
    assert failure_reason(EarlyError({"code": "x", "message": "m"}), None) == "status_5xx"
    assert failure_reason(UpstreamError("refused", retryable=True), None) == "connect"


def pooled_doc(names: list[str]) -> dict[str, Any]:
    ups = [{"name": n, "base_url": f"http://{n}.test"} for n in names]
    return {"routes": [{"name": "r", "provider": "openai-chat", "upstreams": ups}]}


def test_a_reload_keeps_the_state_of_deployments_that_still_exist() -> None:
    metrics = Metrics()
    old = build_state(config_from(pooled_doc(["a", "b"])), metrics)
    assert set(old.pools) == {"r"} and old.pools["r"].names == ("a", "b")
    new = build_state(config_from(pooled_doc(["a", "b", "c"])), metrics, previous=old)
    assert new.pools["r"] is not old.pools["r"]
    assert new.pools["r"].state is old.pools["r"].state  # same store: counts and rests kept
    plain = build_state(config_from({"routes": [{"name": "p", "provider": "simulated"}]}))
    assert plain.pools == {}
