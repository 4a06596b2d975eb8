"""The benchmark's closed-loop scenarios load a peer the way their names say."""

from __future__ import annotations

import dataclasses

from bench.peers import start_direct
from bench.scenarios import LOADS, run_load


async def test_chat_1_rate_holds_every_peer_to_the_same_request_rate(upstream_port: int) -> None:
    rate = next(x for x in LOADS if x.name == "chat-1-rate")
    free = next(x for x in LOADS if x.name == "chat-1")
    peer = start_direct(upstream_port)
    capped = await run_load(peer, dataclasses.replace(rate, duration=1.0))
    uncapped = await run_load(peer, dataclasses.replace(free, duration=1.0))
    # 32 clients, each answer 16 ms after its request: at most 2,000 a second, whoever serves.
    assert capped["failed"] == 0
    # One token a stream; a stream whose token came inside the window may end just after it,
    # and one open as the window began may have had its token before it.
    assert abs(capped["events"] - capped["streams"]) <= rate.concurrency
    assert 1000 < capped["streams_per_s"] <= 2000
    assert uncapped["streams_per_s"] > capped["streams_per_s"]  # chat-1: the peer's own pace
