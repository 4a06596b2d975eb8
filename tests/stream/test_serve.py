"""The entry every streaming endpoint shares (``gateway/stream/serve.py``): what it counts
before a stream is a session."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp

from gateway.admission import Admission, Demand
from tests.support.gateway import running_gateway, wait_for

SILENT = {
    "name": "r",
    "provider": "simulated",
    "options": {"text": "hi", "first_token_delay": "1h"},
}


class SlowHold:
    """A limits backend that takes a while to answer (a Redis round trip)."""

    async def reserve(self, demand: Demand) -> None:
        await asyncio.sleep(0.2)

    def keep(self) -> None:
        pass

    def release(self, usage: Mapping[str, Any] | None) -> None:
        pass


async def test_the_concurrency_cap_holds_while_admissions_wait() -> None:
    """A burst whose admissions all wait on the limits backend: the cap counts each request
    from its check on, not from when its session starts (all six got through before)."""
    doc = {"limits": {"max_concurrent_streams": 2}, "routes": [SILENT]}
    async with running_gateway(doc) as gw:

        async def slow_admit(*_: Any) -> Admission:
            return Admission(holds=[SlowHold()])

        gw.state.admit = slow_admit
        async with aiohttp.ClientSession() as http:
            url = f"{gw.url}/v1/stream/r"
            body = {"messages": [{"role": "user", "content": "hi"}]}
            answers = await asyncio.gather(*(http.post(url, json=body) for _ in range(6)))
            statuses = sorted(answer.status for answer in answers)
            assert statuses == [200, 200, 503, 503, 503, 503]
            assert len(gw.state.sessions) == 2
            for answer in answers:
                answer.close()
            await wait_for(lambda: not gw.state.sessions)
