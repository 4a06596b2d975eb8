"""An admission's holds: all of them count a request, or none does (auth-and-limits.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from gateway.admission import Admission, Demand
from gateway.config.model import RouteLimits
from gateway.errors import GatewayError, RateLimited
from gateway.limits import ErrorReporter, Limiter, MemoryBackend, Scope
from gateway.limits.limiter import Ticket
from gateway.metrics import Metrics
from tests.support.gateway import config_from


class Refuses:
    """A hold that refuses every request (a budget that is used up)."""

    def __init__(self) -> None:
        self.released: list[Mapping[str, Any] | None] = []

    async def reserve(self, demand: Demand) -> None:
        raise RateLimited("budget used up")

    def keep(self) -> None:
        return None

    def release(self, usage: Mapping[str, Any] | None) -> None:
        self.released.append(usage)


async def test_a_later_refusal_uncounts_the_limits_that_admitted_the_request() -> None:
    config = config_from({"routes": [{"name": "r", "provider": "simulated"}]})
    backend = MemoryBackend()
    limiter = Limiter(config, backend, ErrorReporter(Metrics()))
    limits = RouteLimits(concurrent_streams=1, requests_per_minute=1, tokens_per_minute=100)
    scopes = (Scope("route:r", limits),)

    for _ in range(3):  # each refused: no request, no token, no slot is spent
        admission = Admission("poor", [Ticket(limiter, scopes), Refuses()])
        with pytest.raises(GatewayError):
            await admission.reserve(Demand(max_tokens=100))
        admission.release({})  # what the stream entry does after any refusal
    assert backend.streams["route:r"] == 0
    assert backend.windows[("route:r", "rpm")].cur == 0
    assert backend.windows[("route:r", "tpm")].cur == 0

    admitted = Admission("rich", [Ticket(limiter, scopes)])
    await admitted.reserve(Demand(max_tokens=100))  # the whole minute is still there
    admitted.release(None)
