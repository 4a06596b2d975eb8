"""Bad input against the real ``python -m gateway`` process, whose log output is captured.

* Header lines over aiohttp's 8190-byte limit get a clean 400 (no traceback in the body) and do
  not flood the log.
* Secrets (the upstream ``api_key``, and the app key when ``auth`` is available) never appear in
  the logs, in ``/metrics``, or in any answer, even when the upstream echoes its key back in an
  error (as some providers do for a wrong key).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.faults.kit import HELLO, SECRET, SSE, chat_chunk, chat_route, chat_stream
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import gateway_process

APP_KEY = "gw-app-key-very-secret-987654321"
HAS_AUTH = importlib.util.find_spec("gateway.auth") is not None


async def raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_oversize_header_is_a_clean_400_and_the_log_stays_quiet(tmp_path: Path) -> None:
    doc = {"routes": [{"name": "d", "provider": "simulated"}]}
    with gateway_process(tmp_path, doc) as gw:
        lines_before = len(gw.log().splitlines())
        for i in range(20):
            big = b"X-Big: " + b"a" * 10_000
            if i % 2:  # and a request line over the limit
                request = b"GET /" + b"p" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            else:
                request = b"POST /v1/stream/d HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n\r\n"
            raw = await raw_exchange(gw.port, request)
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.split(b" ")[1] == b"400", raw[:200]
            assert b"Traceback" not in body and len(body) < 1000
        log = gw.log()
        assert "Traceback" not in log
        assert len(log.splitlines()) - lines_before <= 2
        # Still serving.
        async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/stream/d", json=HELLO) as r:
            assert r.status == 200
            await r.read()


def secret_doc(upstream: FakeUpstream) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "server": {"max_body_bytes": 2048},
        "routes": [chat_route("r", upstream.url)],
    }
    if HAS_AUTH:
        doc["auth"] = {"keys": [{"name": "web", "key": "${GW_TEST_APP_KEY}"}]}
    return doc


async def test_secrets_never_reach_logs_metrics_or_answers(tmp_path: Path) -> None:
    fake = await FakeUpstream().start()
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}"}}).encode()
    mid = b"data: " + json.dumps({"error": {"message": f"bad key {SECRET}"}}).encode() + b"\n\n"
    fake.push(
        Script(chunks=[(0, chat_stream("fine"))], headers=SSE),
        Script(status=401, headers={"Content-Type": "application/json"}, chunks=[(0, echo)]),
        Script(chunks=[(0, chat_chunk("a") + mid)], headers=SSE),
    )
    auth = {"Authorization": f"Bearer {APP_KEY}"} if HAS_AUTH else {}
    answers: list[bytes] = []
    try:
        with gateway_process(tmp_path, secret_doc(fake), env={"GW_TEST_APP_KEY": APP_KEY}) as gw:
            url = f"{gw.url}/v1/stream/r"
            async with aiohttp.ClientSession() as s:
                for _ in range(3):  # ok, upstream 401 echoing the key, mid-stream echo
                    async with s.post(url, json=HELLO, headers=auth) as r:
                        answers.append(await r.read())
                bad_requests: list[dict[str, Any]] = [
                    {"data": b"{", "headers": {**auth, "Content-Type": "application/json"}},
                    {"json": {"messages": []}, "headers": auth},
                    {"json": {"messages": [{"role": "x", "content": "x" * 4000}]}},
                    {"json": HELLO, "headers": {"Authorization": f"Bearer {APP_KEY}x"}},
                    {"json": HELLO, "headers": {"x-api-key": SECRET}},
                ]
                for kw in bad_requests:
                    async with s.post(url, **kw) as r:
                        answers.append(await r.read())
                async with s.get(url, headers=auth) as r:
                    answers.append(await r.read())
                async with s.get(f"{gw.url}/metrics") as r:
                    metrics = await r.text()
                async with s.get(f"{gw.url}/v1/routes") as r:
                    answers.append(await r.read())
            assert len(fake.seen) == 3
            assert b"fine" in answers[0]
            assert b"Incorrect API key provided" in answers[1]  # the message, not the key
            log = gw.log()
        for secret in (SECRET, APP_KEY):
            for i, body in enumerate(answers):
                assert secret.encode() not in body, (i, body[:300])
            assert secret not in metrics
            assert secret not in log
        assert "[redacted]" in answers[1].decode() or "Incorrect API key" in answers[1].decode()
    finally:
        await fake.stop()
