"""A pooled route served by today's server: its deployments are ``RouteConfig.targets``, so until
the attempt loop asks the Pool, they are tried in config order like fallbacks (before the first
byte only). When the pool is wired in, this test should be reworked to the pool's order."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway
from tests.support.system import free_port

HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def chat_chunk(text: str) -> bytes:
    doc = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = await FakeUpstream().start()
    yield fake
    await fake.stop()


async def test_a_refusing_deployment_is_left_for_the_next(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0, chat_chunk("Hi")), (0, b"data: [DONE]\n\n")]))
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    doc = {
        "routes": [
            {
                "name": "r",
                "provider": "openai-chat",
                "upstreams": [
                    {"name": "east", "base_url": dead, "model": "m"},
                    {"name": "west", "base_url": upstream.url, "model": "m"},
                ],
                "balance": {"strategy": "round_robin"},
            }
        ]
    }
    async with running_gateway(doc) as gw, aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/v1/stream/r", json=HELLO) as resp:
            assert resp.status == 200
            body = await resp.text()
    assert '"Hi"' in body and "event: end" in body
    assert len(upstream.seen) == 1
