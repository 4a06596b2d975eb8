"""Browser tests: real headless Chromium (Playwright, the system binary) against a real gateway.

One browser per test module (a launch costs 0.7 s, 2 s on a loaded machine), so the module's
tests and every fixture here run on one module-scoped event loop (``LOOP``); each test gets a
fresh browser context and page, a gateway on the production runner with the routes below, and
a fake upstream that records when the gateway closed its connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, ConsoleMessage, Page, Request, Response, async_playwright

from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.system import require_binary

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "static"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SSE = {"Content-Type": "text/event-stream"}
LOOP = pytest.mark.asyncio(loop_scope="module")
"""Mark of every browser test: it runs on the module's loop, where the browser lives."""

# The demo route's text: fixed so the page's final text can be compared exactly; non-ASCII so
# a UTF-8 character split across network reads would show.
DEMO_TEXT = (
    "Streaming tokens through the gateway: every word arrives as its own event, "
    "naïve café déjà vu, 日本語のテキスト, emoji 🙂 and a final word."
)
DEMO_REASONING = "First I think about the question, then I answer it in one sentence."
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    doc = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def slow_forever() -> Script:
    """An upstream that streams a word every 50 ms for a long time (until the gateway leaves)."""
    chunks = [(0.05, chat_chunk({"content": f"word{i} "})) for i in range(2000)]
    return Script(chunks=chunks, headers=SSE, hang_after=True)


def tool_call_script() -> Script:
    args = ['{"ci', 'ty": "Par', 'is", "unit', '": "celsius"}']
    chunks = [chat_chunk({"role": "assistant", "content": None})]
    first = {"index": 0, "id": "call_42", "type": "function", "function": {"name": "get_weather"}}
    chunks.append(
        chat_chunk({"tool_calls": [{**first, "function": {**first["function"], "arguments": ""}}]})
    )
    for piece in args:
        chunks.append(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    chunks.append(chat_chunk({}, finish="tool_calls"))
    chunks.append(b"data: [DONE]\n\n")
    return Script(chunks=[(0.02, c) for c in chunks], headers=SSE)


def gateway_doc(upstream: FakeUpstream) -> dict[str, Any]:
    fake = {"base_url": upstream.url, "model": "fake-model"}
    return {
        "routes": [
            {
                "name": "demo",
                "provider": "simulated",
                "options": {
                    "text": DEMO_TEXT,
                    "reasoning": DEMO_REASONING,
                    "first_token_delay": "300ms",
                    "token_interval": "40ms",
                },
            },
            {
                "name": "fast",
                "provider": "simulated",
                "options": {
                    "text": DEMO_TEXT,
                    "reasoning": DEMO_REASONING,
                    "first_token_delay": 0,
                    "token_interval": 0,
                },
            },
            {"name": "upstream", "provider": "openai-chat", "upstream": fake},
            {
                "name": "flaky",
                "provider": "simulated",
                "options": {"fail_after": 3, "first_token_delay": 0, "token_interval": "10ms"},
            },
            {
                "name": "cut",
                "provider": "simulated",
                "options": {"truncate_after": 3, "first_token_delay": 0, "token_interval": "10ms"},
            },
            {
                "name": "ndjson-route",
                "provider": "simulated",
                "format": "ndjson",
                "options": {"text": "in any format", "first_token_delay": 0, "token_interval": 0},
            },
        ]
    }


@dataclass
class Watch:
    """What went wrong in a page: console errors, uncaught exceptions, failed or 4xx/5xx requests."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.console_errors.append(f"uncaught: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            self.console_errors.append(f"{msg.type}: {msg.text}")

    def _failed(self, request: Request) -> None:
        self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.bad_responses.append(f"{response.status} {response.url}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    chromium = require_binary("chromium", "chromium-browser")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    pg = await context.new_page()
    watch = Watch()
    watch.attach(pg)
    pg.watch = watch  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        await context.close()


def watch_of(page: Page) -> Watch:
    w: Watch = page.watch  # type: ignore[attr-defined]
    return w


@pytest_asyncio.fixture(loop_scope="module")
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = await FakeUpstream().start()
    fake.default = slow_forever()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def gateway(upstream: FakeUpstream) -> AsyncIterator[RunningGateway]:
    async with running_gateway(gateway_doc(upstream)) as gw:
        yield gw


# -- a raw SSE server: bytes the gateway would never send, to test the client on its own ---------

RAW_BODIES: dict[str, list[bytes]] = {
    # Frames and then EOF without a terminal event: a dead stream that must not look like success.
    "truncated": [
        b'event: created\ndata: {"id":"r1","route":"raw","provider":"raw","model":null}\n\n',
        b'event: delta\ndata: {"text":"partial "}\n\n',
        b'event: delta\ndata: {"text":"answer"}\n\n',
    ],
    # The terminal event's frame lacks its closing blank line: per the SSE rules it is never
    # dispatched, so this is truncated too.
    "unterminated-end": [
        b'event: created\ndata: {"id":"r2","route":"raw","provider":"raw","model":null}\n\n',
        b'event: delta\ndata: {"text":"almost"}\n\n',
        b'event: end\ndata: {"reason":"stop"}\n',
    ],
    # A complete stream with CRLF line ends, a heartbeat comment, a multi-line data field (JSON
    # tolerates the newline between tokens) and a split multi-byte character, one byte per write.
    "bytewise": [
        bytes([b])
        for b in (
            b'\xef\xbb\xbfevent: created\r\ndata: {"id":"r3","route":"raw","provider":"raw","model":null}\r\n\r\n'
            b": ping\r\n\r\n"
            b'event: delta\r\ndata: {"text":\r\ndata: "h\xc3\xa9 \xf0\x9f\x99\x82"}\r\n\r\n'
            b'event: end\rdata: {"reason":"stop"}\r\r'
        )
    ],
}


class RawServer:
    """Serves the client module, a blank page, and ``POST /raw/<name>`` canned SSE bodies."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> RawServer:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/static/gateway-client.js", self._client)
        app.router.add_post("/raw/{name}", self._raw)
        app.router.add_post("/reset", self._reset)
        app.router.add_post("/plain", self._plain)
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _index(self, request: web.Request) -> web.Response:
        html = (
            '<!doctype html><html><head><link rel="icon" href="data:,"></head><body></body></html>'
        )
        return web.Response(text=html, content_type="text/html")

    async def _client(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "gateway-client.js")

    async def _raw(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in RAW_BODIES[request.match_info["name"]]:
            await resp.write(piece)
        await resp.write_eof()
        return resp

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        """Two frames, then the connection is reset (no chunked terminator)."""
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(RAW_BODIES["truncated"][0] + RAW_BODIES["truncated"][1])
        await asyncio.sleep(0.1)
        assert request.transport is not None
        request.transport.abort()
        return resp

    async def _plain(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="hello", content_type="text/plain")


@pytest_asyncio.fixture(loop_scope="module")
async def raw_server() -> AsyncIterator[RawServer]:
    server = await RawServer().start()
    try:
        yield server
    finally:
        await server.stop()
