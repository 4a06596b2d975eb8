"""The budget's part in admission (``BudgetTicket``) and holds kept for a drain (``keep``)."""

from __future__ import annotations

import asyncio
import math

import pytest

from gateway.admission import Admission, Demand
from gateway.config.accounting import Budget, PriceOverride
from gateway.config.model import AppKey, GatewayConfig
from gateway.errors import BudgetExceeded
from gateway.limits import Limiter, MemoryBackend
from gateway.limits.budget import NANO, Budgets, BudgetTicket
from gateway.pricing import Pricer
from tests.support.gateway import config_from

HOUR = 3600
T0 = 400_000 * HOUR
WEB = AppKey("web", "k1", budget=Budget(1.0, "1h"))
# $0.001 per output token, $0.0001 per input token, $0.0002 per cache-write token.
PRICES = [PriceOverride("m", 100.0, 1000.0, 10.0, 200.0)]
ROUTE = {"name": "r", "provider": "openai-chat", "upstream": {"model": "m"}}


def setup(**limits: object) -> tuple[Budgets, MemoryBackend, Pricer, GatewayConfig]:
    config = config_from({"routes": [ROUTE], "limits": limits})
    store = MemoryBackend()
    budgets = Budgets(config, store, lambda exc: None, lambda: T0 + 10)
    return budgets, store, Pricer(PRICES), config


def used(store: MemoryBackend) -> tuple[int, int]:
    _, spent, reserved = store.budgets["web:1h"]
    return spent, reserved


@pytest.mark.parametrize(("max_tokens", "out"), [(200, 200), (None, 300)], ids=str)
async def test_reserves_the_worst_case_of_the_demand(max_tokens: int | None, out: int) -> None:
    budgets, store, pricer, config = setup(token_estimate=300)
    ticket = BudgetTicket(budgets, pricer, WEB, config.routes[0], 300)
    await ticket.reserve(Demand(max_tokens, None, body_bytes=401))
    tokens_in = math.ceil(401 / 4)  # at the dearer of input and cache-write prices
    worst = (out * 1000.0 + tokens_in * 200.0) / 1e6
    assert used(store) == (0, round(worst * NANO))
    ticket.release({"input_tokens": 90, "output_tokens": 40, "cost_usd": 0.0125})
    assert used(store) == (round(0.0125 * NANO), 0)
    ticket.release({"cost_usd": 0.5})  # once
    assert used(store) == (round(0.0125 * NANO), 0)


async def test_without_a_cost_the_reservation_is_charged() -> None:
    budgets, store, pricer, config = setup()
    ticket = BudgetTicket(budgets, pricer, WEB, config.routes[0], 1000)
    await ticket.reserve(Demand(10))
    reserved = used(store)[1]
    ticket.release({"input_tokens": 5})  # usage without a price: no cost_usd
    assert used(store) == (reserved, 0)


async def test_a_refusal_raises_budget_exceeded_and_holds_nothing() -> None:
    budgets, store, pricer, config = setup()
    ticket = BudgetTicket(budgets, pricer, WEB, config.routes[0], 1000)
    with pytest.raises(BudgetExceeded) as refused:
        await ticket.reserve(Demand(2000))  # $2 of output on a $1 budget
    assert refused.value.headers["Retry-After"] == str(HOUR - 10)
    assert used(store) == (0, 0)
    ticket.release(None)
    assert used(store) == (0, 0)


async def test_a_kept_admission_outlives_its_task_until_released() -> None:
    """The budget and the rate-limit ticket both: a drain releases them, not the task's end."""
    budgets, store, pricer, config = setup()
    route = config.routes[0]
    limits = config_from({"routes": [{**ROUTE, "limits": {"concurrent_streams": 1}}]})
    limiter = Limiter(limits, MemoryBackend(), lambda exc: None)
    ticket = limiter.ticket(None, limits.routes[0])
    assert ticket is not None
    admission = Admission("web", [BudgetTicket(budgets, pricer, WEB, route, 1000), ticket])

    async def handler() -> None:
        await admission.reserve(Demand(10))
        admission.keep()
        raise asyncio.CancelledError  # the client left; a drain goes on

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(handler())
    await asyncio.sleep(0)
    assert used(store)[1] > 0 and not ticket.released
    admission.release({"input_tokens": 1, "output_tokens": 2, "cost_usd": 0.002})
    assert used(store) == (round(0.002 * NANO), 0)
    assert ticket.released


async def test_without_keep_the_task_end_releases() -> None:
    budgets, store, pricer, config = setup()
    admission = Admission("web", [BudgetTicket(budgets, pricer, WEB, config.routes[0], 1000)])

    async def handler() -> None:
        await admission.reserve(Demand(10))
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(handler())
    await asyncio.sleep(0)
    reserved_worst = round(10 * 1000.0 / 1e6 * NANO)
    assert used(store) == (reserved_worst, 0)  # charged the worst case
