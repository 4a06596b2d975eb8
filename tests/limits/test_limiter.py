"""The limiter's own logic: scopes, reservations, release on every exit, backend failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from gateway.admission import Demand
from gateway.config.model import AppKey, RouteLimits
from gateway.errors import RateLimited, Unavailable
from gateway.limits import BackendError, ErrorReporter, Grant, Limiter, MemoryBackend, Scope
from gateway.limits.base import Denied, LimitBackend
from gateway.limits.limiter import tokens_used
from gateway.metrics import Metrics
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
