"""Resumable streams in headless Chromium (contract section 12): the browser's own
``EventSource`` survives a connection the network cut, and the playground survives a reload.

* ``EventSource`` on ``GET <route path>/<stream id>`` through a TCP proxy that cuts the first
  stream connection after a few ``delta`` frames: the browser reconnects by itself with
  ``Last-Event-ID`` (the proxy sees the header), and the events it got, in order, are ids 1..N
  without a gap or a repeat, the route's whole text, and one terminal event.
* The playground on a resumable route, reloaded mid-answer: the new page finds the stream id in
  ``sessionStorage``, resumes, and shows the whole answer, the route's text exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from tests.browser.conftest import DEMO_TEXT, LOOP
from tests.support.gateway import RunningGateway, running_gateway

pytestmark = [pytest.mark.system, LOOP]

RESUMABLE = {
    "name": "resumable",
    "provider": "simulated",
    "resume": {"enabled": True, "window": "1m"},
    "on_client_abort": "detach",
    "options": {"text": DEMO_TEXT, "first_token_delay": "100ms", "token_interval": "40ms"},
}
PATH = "/v1/stream/resumable"
BLANK = b"<!doctype html><title>blank</title>"


@pytest_asyncio.fixture(loop_scope="module")
async def gateway() -> AsyncIterator[RunningGateway]:
    async with running_gateway({"routes": [RESUMABLE]}) as gw:
        yield gw


@dataclass
class CuttingProxy:
    """A TCP proxy to the gateway, one request per connection. ``GET /blank`` is a page of its
    own (the origin the test's ``EventSource`` runs in). The first connection whose request
    is a stream ``GET`` is cut after ``cut_after`` ``delta`` frames went through."""

    gateway_port: int
    cut_after: int = 5
    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    cut_done: bool = False
    _server: asyncio.Server | None = None

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        self.requests.append(head)
        if head.startswith(b"GET /blank "):
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(BLANK), BLANK)
            )
            await writer.drain()
            writer.close()
            return
        cut = head.startswith(b"GET " + PATH.encode()) and not self.cut_done
        if cut:
            self.cut_done = True
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.gateway_port)
        # one request per connection: the gateway closes after it, so the browser opens anew
        up_writer.write(re.sub(rb"(?im)^connection: [^\r\n]*", b"Connection: close", head))
        await up_writer.drain()
        seen = 0
        try:
            while chunk := await up_reader.read(65536):
                if cut:
                    seen += chunk.count(b"\nevent: delta\n")
                    if seen >= self.cut_after:  # cut mid-frame: the tail of this read is lost
                        writer.write(chunk[: chunk.rfind(b"\nevent: delta\n") + 3])
                        await writer.drain()
                        writer.transport.abort()
                        return
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            up_writer.close()
            writer.close()


@pytest_asyncio.fixture(loop_scope="module")
async def proxy(gateway: RunningGateway) -> AsyncIterator[CuttingProxy]:
    p = await CuttingProxy(gateway.port).start()
    try:
        yield p
    finally:
        await p.close()


async def start_and_drop(gateway: RunningGateway) -> str:
    """POST a stream, read its ``created`` event, drop the connection (the stream detaches)."""
    async with aiohttp.ClientSession() as s:
        r = await s.post(gateway.url + PATH, json={"messages": [{"role": "user", "content": "hi"}]})
        block = await r.content.readuntil(b"\n\n")
        r.close()
    data = next(x for x in block.decode().split("\n") if x.startswith("data: "))
    stream_id: str = json.loads(data[6:])["id"]
    return stream_id


# Collects every event an EventSource gets, in order; closes it after the terminal event (as a
# page would) and resolves with the list.
EVENT_SOURCE = """
(url) => new Promise((resolve, reject) => {
  const got = [];
  const es = new EventSource(url);
  const types = ["created", "thinking", "reasoning", "clear", "delta", "tool_call", "usage",
                 "end", "error"];
  for (const type of types) {
    es.addEventListener(type, (e) => {
      if (e.data === undefined) return;  // the connection's own error (it reconnects)
      got.push({ id: e.lastEventId, type, data: JSON.parse(e.data) });
      if (type === "end" || type === "error") { es.close(); resolve(got); }
    });
  }
  setTimeout(() => { es.close(); reject(new Error("timeout: " + JSON.stringify(got))); }, 20000);
})
"""


async def test_event_source_reconnects_with_last_event_id_and_gets_the_rest(
    page: Page, gateway: RunningGateway, proxy: CuttingProxy
) -> None:
    stream_id = await start_and_drop(gateway)
    await page.goto(f"{proxy.url}/blank")
    got: list[dict[str, Any]] = await page.evaluate(EVENT_SOURCE, f"{PATH}/{stream_id}")

    assert proxy.cut_done
    streams = [r for r in proxy.requests if r.startswith(b"GET " + PATH.encode())]
    assert len(streams) >= 2, streams  # the cut one, then the browser's reconnection
    first_lines = streams[0].decode().lower()
    assert "last-event-id" not in first_lines
    resumed = dict(
        line.split(": ", 1) for line in streams[1].decode().split("\r\n")[1:] if ": " in line
    )
    last_before_cut = int({k.lower(): v for k, v in resumed.items()}["last-event-id"])
    assert 1 < last_before_cut < len(got)

    assert [int(e["id"]) for e in got] == list(range(1, len(got) + 1))
    assert got[0]["type"] == "created" and got[0]["data"]["id"] == stream_id
    assert [e["type"] for e in got].count("end") == 1 and got[-1]["type"] == "end"
    assert not any(e["type"] == "error" for e in got)
    assert "".join(e["data"]["text"] for e in got if e["type"] == "delta") == DEMO_TEXT


async def test_the_playground_survives_a_reload_mid_answer(
    page: Page, gateway: RunningGateway
) -> None:
    await page.goto(f"{gateway.url}/?route=resumable")
    await expect(page.locator("#send")).to_be_enabled()
    await page.fill("#message", "Hello there")
    await page.click("#send")
    text = page.locator(".msg.assistant").last.locator(".text")
    await expect(text).not_to_be_empty(timeout=10_000)
    saved = await page.evaluate("sessionStorage.getItem('gateway-playground-stream')")
    assert saved is not None and json.loads(saved)["route"] == "resumable"
    partial = await text.text_content()
    assert partial and len(partial) < len(DEMO_TEXT)  # mid-answer

    await page.reload()
    await expect(page.locator("#status")).to_have_text("done · stop", timeout=20_000)
    final = page.locator(".msg.assistant").last.locator(".text")
    assert await final.text_content() == DEMO_TEXT
    assert await page.locator(".msg.assistant").count() == 1
    assert await page.evaluate("sessionStorage.getItem('gateway-playground-stream')") is None
    with contextlib.suppress(Exception):
        await page.close()
