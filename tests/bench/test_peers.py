"""The benchmark's gateway variants start from configs the gateway accepts.

The bench is not run by ``make test`` (its figures belong in docs/performance.md), so a config
edit that breaks a variant would only show up in the next long run; these tests catch it here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
import yaml

from bench.peers import (
    MEASURED_IN_TURN,
    PEERS,
    cpu_seconds,
    cpu_times,
    gateway_config,
    in_turn,
    with_pool,
    with_redis_resume,
    with_resume,
)
from bench.tracing import with_tracing
from gateway.config.parse import parse_config

VARIANTS: dict[str, Callable[[str], str]] = {
    "gateway": lambda conf: conf,
    "gateway-resume": with_resume,
    "gateway-pool": with_pool,
    "gateway-resume-redis": with_redis_resume("redis://127.0.0.1:6390/0"),
    "gateway-traced": with_tracing(4318),
}


@pytest.mark.parametrize("client", ["auto", "raw", "aiohttp"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_config_parses(name: str, client: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_UPSTREAM_CLIENT", client)
    config = parse_config(yaml.safe_load(gateway_config(8080, 9090, VARIANTS[name])))
    assert config.server.upstream_client == client
    assert [route.name for route in config.routes] == ["chat", "responses"]


def test_resume_variant_records_every_route() -> None:
    config = parse_config(yaml.safe_load(gateway_config(8080, 9090, with_resume)))
    assert all(route.resume is not None and route.resume.enabled for route in config.routes)


def test_pool_variant_has_three_deployments_per_route() -> None:
    config = parse_config(yaml.safe_load(gateway_config(8080, 9090, with_pool)))
    assert all(route.pool is not None and len(route.pool.targets) == 3 for route in config.routes)


def test_traced_variant_samples_everything() -> None:
    config = parse_config(yaml.safe_load(gateway_config(8080, 9090, with_tracing(4318))))
    assert config.tracing is not None
    assert config.tracing.sample_ratio == 1.0
    assert config.tracing.otlp_endpoint == "http://127.0.0.1:4318"


def test_redis_resume_variant_uses_the_bench_redis() -> None:
    conf = gateway_config(8080, 9090, with_redis_resume("redis://127.0.0.1:6390/0"))
    config = parse_config(yaml.safe_load(conf))
    assert config.limits.redis_url == "redis://127.0.0.1:6390/0"
    assert all(route.resume.store == "redis" for route in config.routes)


def test_hold_config_is_a_silent_built_in_route() -> None:
    from bench.hold import CONF

    config = parse_config(yaml.safe_load(CONF.format(port=8080)))
    (route,) = config.routes
    assert route.provider == "simulated" and route.path == "/v1/stream/silent"
    assert route.primary.options["first_token_delay"] >= 3600


def test_cpu_times_splits_a_process_cpu_into_user_and_system() -> None:
    pid = os.getpid()
    user0, system0 = cpu_times([pid])
    end = time.perf_counter() + 10  # a loaded machine gives this process less of the wall time
    user1, system1 = user0, system0
    while user1 - user0 < 0.05 and time.perf_counter() < end:
        for _ in range(1000):  # this process's own code, in user space
            sum(range(100))
        user1, system1 = cpu_times([pid])
    assert user1 - user0 >= 0.05  # ticks of 10 ms
    assert system1 >= system0
    assert cpu_seconds([pid]) == pytest.approx(user1 + system1, abs=0.05)
    assert cpu_times([2**22 + 1]) == (0.0, 0.0)  # a process that is gone counts nothing


def test_a_repetition_measures_nginx_right_before_the_gateway_whatever_the_order_asked() -> None:
    # The headline ratios are gateway / nginx; measured nine minutes apart (LiteLLM and Portkey
    # between them) they met different host speeds.
    asked = ["direct", "nginx", "litellm", "portkey", "gateway"]
    assert in_turn(asked) == ["direct", "nginx", "gateway", "portkey", "litellm"]
    assert in_turn(["gateway-pool", "gateway", "nginx"]) == ["nginx", "gateway", "gateway-pool"]
    assert sorted(MEASURED_IN_TURN) == sorted(PEERS)  # a new peer gets its turn
