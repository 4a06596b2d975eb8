"""The floor proxy (``bench/floor.py``) does the translation it claims to bound: a Chat
Completions stream in, the token protocol out, request after request on one connection."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.floor import Client, FloorServer


@pytest.fixture
def upstream_port() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_upstream", "--port", "0"], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[0] == b"ready"
    try:
        yield int(line[1])
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()


async def test_the_floor_translates_a_chat_stream_into_tokens(upstream_port: int) -> None:
    server = FloorServer(upstream_port)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Client(server), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    for tokens in (3, 1):
        body = json.dumps({"messages": [{"role": "user", "content": f"bench:{tokens}:0:0:flow"}]})
        writer.write(
            f"POST /v1/stream/chat HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            f"{body}".encode()
        )
        async with asyncio.timeout(5):
            answers.append(await reader.readuntil(b"\r\n0\r\n\r\n"))
    writer.close()
    await writer.wait_closed()
    listener.close()
    await listener.wait_closed()
    pooled = [conn.transport for conn in server.idle]
    for tokens, answer in zip((3, 1), answers, strict=True):
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        events = [line[7:] for line in answer.split(b"\n") if line.startswith(b"event: ")]
        assert events == [b"created", *[b"delta"] * tokens, b"usage", b"end"]
        assert answer.count(b"~") == tokens  # one marker per token, as the load client counts
    assert len(pooled) == 1  # one pooled upstream connection served both
    for transport in pooled:
        transport.close()
    await asyncio.sleep(0)
