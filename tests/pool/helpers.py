"""Shared helpers of the pool tests: a controlled clock and pool configs."""

from __future__ import annotations

from gateway.config.model import UpstreamConfig, UpstreamTarget
from gateway.config.pool import Cooldown, Deployment, PoolConfig, Strategy


class Clock:
    """A clock the test moves by hand (seconds since the epoch, like ``time.time``)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def deployment(name: str, weight: float = 1.0, cap: int | None = None) -> Deployment:
    target = UpstreamTarget("p", UpstreamConfig(f"http://{name}.test"), deployment=name)
    return Deployment(name, target, weight, cap)


def pool_config(
    *deployments: Deployment,
    strategy: Strategy = "round_robin",
    cooldown: Cooldown | None = None,
) -> PoolConfig:
    deps = deployments or (deployment("a"), deployment("b"))
    return PoolConfig(tuple(deps), strategy, cooldown or Cooldown(3, 60.0, 30.0))
