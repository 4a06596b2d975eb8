"""Graceful drain on SIGTERM, with the real ``python -m gateway`` process (issue 5 item 6).

``/readyz`` turns 503 and new streams get 503 ``unavailable`` at once; open streams get up to
``server.shutdown_timeout`` to finish (one that finishes in time ends with ``end``); each one
left then gets a terminal ``error{code: "shutdown", retryable: true}`` and its upstream is
cancelled (the fake upstream sees the close); the process exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp

from gateway.client import collect
from tests.faults.kit import (
    HELLO,
    SSE,
    chat_chunk,
    chat_route,
    chat_stream,
    get_status,
    post,
    wait_exit,
)
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import gateway_process, wait_for

GRACE = 1.5


async def test_sigterm_drains_then_ends_the_rest_with_shutdown(tmp_path: Path) -> None:
    fake = await FakeUpstream().start()
    short = [(0.05, chat_chunk(f"s{i} ")) for i in range(8)] + [(0.05, chat_stream())]
    fake.push(Script(chunks=short, headers=SSE))  # ends ~0.45 s in: inside the grace
    fake.push(Script(chunks=[(0, chat_chunk("long "))], headers=SSE, endless=(0.05, b": x\n\n")))
    doc = {"server": {"shutdown_timeout": f"{GRACE}s"}, "routes": [chat_route("r", fake.url)]}
    try:
        with gateway_process(tmp_path, doc) as gw:
            url = f"{gw.url}/v1/stream/r"
            async with aiohttp.ClientSession() as http:
                finishing = asyncio.ensure_future(collect(http, url, HELLO))
                await wait_for(lambda: len(fake.seen) == 1, 5)
                cut = asyncio.ensure_future(collect(http, url, HELLO))
                await wait_for(lambda: len(fake.seen) == 2, 5)
                await asyncio.sleep(0.1)
                t_term = time.monotonic()
                gw.signal(signal.SIGTERM)
                await asyncio.sleep(0.2)
                assert await get_status(f"{gw.url}/readyz") == 503
                refused = await post(url)
                assert refused.status == 503
                assert refused.json()["error"]["code"] == "unavailable"
                assert refused.headers["Retry-After"] == "1"  # another replica can take it now

                done = await asyncio.wait_for(finishing, 5)
                assert done[-1].type == "end"
                assert "".join(e.data.get("text", "") for e in done).startswith("s0 s1")
                assert fake.seen[0].completed

                ended = await asyncio.wait_for(cut, 10)
                t_cut = time.monotonic() - t_term
                assert ended[-1].type == "error"
                assert ended[-1].data["code"] == "shutdown"
                assert ended[-1].data["retryable"] is True
                assert sum(e.type in ("end", "error") for e in ended) == 1
                assert GRACE - 0.1 <= t_cut < GRACE + 2.0
                await wait_for(lambda: fake.seen[1].closed_at is not None, 2)
                assert not fake.seen[1].completed
                assert fake.seen[1].closed_at is not None
                assert fake.seen[1].closed_at - t_term < GRACE + 1.0
            assert await wait_exit(gw.proc, 10) == 0
            log = gw.log()
            assert '"event": "draining"' in log or '"event":"draining"' in log
            assert "Traceback" not in log
    finally:
        await fake.stop()


async def test_sigterm_with_no_streams_exits_at_once(tmp_path: Path) -> None:
    doc = {
        "server": {"shutdown_timeout": "30s"},
        "routes": [{"name": "d", "provider": "simulated"}],
    }
    with gateway_process(tmp_path, doc) as gw:
        t0 = time.monotonic()
        gw.signal(signal.SIGTERM)
        assert await wait_exit(gw.proc, 10) == 0
        assert time.monotonic() - t0 < 5  # the grace is a ceiling, not a wait
