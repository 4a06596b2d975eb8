"""No request outlives its answer: whatever way a stream ends, its objects are freed.

Run over both builds (``gateway.native``): a compiled module that kept one reference too many
to a coroutine's locals would keep each request, its connection and its stream alive for good,
with no referrer for the cyclic collector to find. Each answer kind goes through once: a token
stream that completes and one that fails mid-stream, a whole Chat Completions answer and one
that fails, a whole and a streamed Messages answer, an upstream that refuses, an unknown model,
a malformed body.
"""

from __future__ import annotations

import gc
import socket
from typing import Any

import aiohttp

from gateway import httpexchange, httpserver
from gateway.stream.session import StreamSession
from tests.support.gateway import running_gateway
from tests.support.heap import live, new_objects_only


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _routes() -> dict[str, Any]:
    sim = {
        "name": "sim",
        "provider": "simulated",
        "options": {"text": "Hello there, world!", "first_token_delay": 0, "token_interval": 0},
    }
    down = {
        "name": "down",
        "provider": "openai-chat",
        "upstream": {"base_url": f"http://127.0.0.1:{_closed_port()}/v1", "api_key": "sk-x"},
    }
    broken = {**sim, "name": "broken", "options": {**sim["options"], "fail_after": 2}}
    return {"routes": [sim, broken, down]}


def _alive() -> dict[str, int]:
    """The requests, connections and sessions made inside ``new_objects_only`` still alive,
    after a collection (a cycle is not a leak here; a reference kept is)."""
    gc.collect()
    kinds = {
        "request": httpexchange.ServerRequest,
        "connection": httpserver.Connection,
        "session": StreamSession,
    }
    return {name: live(kind) for name, kind in kinds.items()}


USER = [{"role": "user", "content": "hi"}]


async def test_every_kind_of_answer_frees_its_request_connection_and_stream() -> None:
    with new_objects_only(collector=True):
        before = _alive()
        async with running_gateway(_routes()) as gw:
            connector = aiohttp.TCPConnector(force_close=True)  # each answer its own connection
            async with aiohttp.ClientSession(connector=connector) as s:
                answers = []
                for path, body in (
                    ("/v1/stream/sim", {"messages": USER}),
                    ("/v1/stream/broken", {"messages": USER}),
                    ("/v1/stream/down", {"messages": USER}),
                    ("/v1/chat/completions", {"model": "sim", "messages": USER}),
                    ("/v1/chat/completions", {"model": "broken", "messages": USER}),
                    ("/v1/chat/completions", {"model": "nope", "messages": USER}),
                    ("/v1/chat/completions", {"model": "sim", "messages": USER, "stream": True}),
                    ("/v1/messages", {"model": "sim", "max_tokens": 9, "messages": USER}),
                    (
                        "/v1/messages",
                        {"model": "sim", "max_tokens": 9, "messages": USER, "stream": True},
                    ),
                    ("/v1/stream/sim", "{"),
                ):
                    data = body if isinstance(body, str) else None
                    payload = None if isinstance(body, str) else body
                    async with s.post(gw.url + path, json=payload, data=data) as r:
                        answers.append((path, r.status, await r.read()))
            # Every answer kind happened (so a leak in any of them would show below).
            statuses = [status for _, status, _ in answers]
            assert statuses == [200, 200, 502, 200, 502, 404, 200, 200, 200, 415], answers
            assert b"event: error" in answers[1][2] and b"event: end" in answers[0][2]
            assert _alive() == before
