"""gateway/static/gateway-client.js with ``resume: true`` (under node) against a stream that is
cut mid-way: it reconnects with ``Last-Event-ID`` and finishes, each event once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.resume.test_client_resume import Flaky, choppy_app, flaky, serving  # noqa: F401 (fixture)
from tests.support.gateway import running_gateway
from tests.support.system import require_binary

HERE = Path(__file__).resolve().parent
CLIENT = HERE.parents[1] / "gateway" / "static" / "gateway-client.js"


async def run_node(url: str, mode: str) -> dict[str, Any]:
    node = require_binary("node")
    proc = await asyncio.create_subprocess_exec(
        node,
        "--no-warnings",
        str(HERE / "resume_client.mjs"),
        str(CLIENT),
        url,
        mode,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_token_events_resume(flaky: tuple[Flaky, str]) -> None:  # noqa: F811
    _, url = flaky
    result = await run_node(url, "events")
    assert result == {"events": [["1", "created"], ["2", "delta"], ["3", "delta"], ["4", "end"]]}


async def test_stream_tokens_resume_and_progress(flaky: tuple[Flaky, str]) -> None:  # noqa: F811
    _, url = flaky
    result = await run_node(url, "summary")
    assert result == {"text": "Hello", "reason": "stop", "progress": [1, 2, 3, 4]}


@pytest.mark.parametrize("flaky", [True], indirect=True)
async def test_expired_stream_is_an_http_error(flaky: tuple[Flaky, str]) -> None:  # noqa: F811
    _, url = flaky
    assert await run_node(url, "events") == {"error": "not_found", "status": 404}


async def test_resume_keeps_the_first_requests_clock(flaky: tuple[Flaky, str]) -> None:  # noqa: F811
    _, url = flaky
    result = await run_node(url, "timings")
    assert result["text"] == "Hello"
    ats = result["ats"]
    assert ats == sorted(ats), ats  # no jump back at the resume
    assert ats[2] >= 200, ats  # event 3 came after the 200 ms wait before the resume
    timings = result["timings"]
    assert timings["duration"] >= 200
    assert timings["tokensPerSecond"] is not None


async def test_resume_keeps_the_query_string(flaky: tuple[Flaky, str]) -> None:  # noqa: F811
    _, url = flaky
    result = await run_node(f"{url}?format=tokens", "events")
    assert result == {"events": [["1", "created"], ["2", "delta"], ["3", "delta"], ["4", "end"]]}


async def test_resume_of_an_ended_stream_rejects(flaky: tuple[Flaky, str]) -> None:  # noqa: F811
    # 204: nothing more will come, and this call never saw the terminal event.
    _, url = flaky
    assert await run_node(url, "ended") == {"error": "stream_truncated", "status": 204}


async def test_abort_in_a_callback_stops_the_stream() -> None:
    # One network chunk holds the whole stream, `end` included: the abort must still win.
    result = await run_node("http://unused.invalid/s", "abort")
    assert result == {
        "streamTokens": "AbortError",
        "afterAbort": [],
        "tokenEvents": "AbortError",
        "seen": ["created", "delta"],
    }


@pytest.mark.parametrize("flaky", [{"answer_first": 503}], indirect=True)
async def test_a_transient_status_on_a_resume_is_tried_again(flaky: tuple[Flaky, str]) -> None:  # noqa: F811
    # A proxy answers 502/503 while the gateway restarts: exactly when a resume is needed.
    _, url = flaky
    result = await run_node(url, "events")
    assert result == {"events": [["1", "created"], ["2", "delta"], ["3", "delta"], ["4", "end"]]}


@pytest.mark.parametrize("flaky", [{"answer_first": 404}], indirect=True)
async def test_a_resume_refused_for_good_is_not_tried_again(flaky: tuple[Flaky, str]) -> None:  # noqa: F811
    _, url = flaky
    assert await run_node(url, "events") == {"error": "not_found", "status": 404}


async def test_every_resume_that_made_progress_starts_the_backoff_again() -> None:
    # Many breaks of one long stream: each is a new stall with the first delay, not a delay
    # doubled by every earlier break (it would outgrow the resume window).
    async with serving(choppy_app()) as server:
        result = await run_node(str(server.make_url("/s")), "backoff")
    assert result == {"ids": [str(i) for i in range(1, 11)], "waits": [20] * 4}


async def test_headers_of_any_form_are_merged_by_name() -> None:
    # A `Headers` object (silently dropped before: a 401) and lower-case names (sent twice
    # before: "application/json, application/json; charset=utf-8", a 415).
    doc = {
        "auth": {"keys": [{"name": "app", "key": "test-key"}]},
        "routes": [
            {
                "name": "demo",
                "provider": "simulated",
                "options": {"text": "Hi", "first_token_delay": 0, "token_interval": 0},
            }
        ],
    }
    async with running_gateway(doc) as gw:
        result = await run_node(f"{gw.url}/v1/stream/demo", "headers")
    assert result == {"Headers": "stop", "pairs": "stop", "lowercase": "stop"}


async def test_the_call_resolves_at_end_even_if_the_body_stays_open() -> None:
    # Bytes after the terminal event are drained in the background: a server (or a proxy) that
    # keeps the body open after `end` never delays the caller.
    resolved = asyncio.Event()
    order: list[str] = []

    async def held(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(
            b'id: 1\nevent: created\ndata: {"id":"h","route":"r","provider":"p","model":null}\n\n'
            b'id: 2\nevent: delta\ndata: {"text":"done"}\n\n'
            b'id: 3\nevent: end\ndata: {"reason":"stop"}\n\n: after the end\n\n'
        )
        try:
            await asyncio.wait_for(resolved.wait(), 10)  # a safety net for the old behaviour
        except TimeoutError:
            order.append("gave up")
        await resp.write_eof()
        return resp

    async def on_resolved(request: web.Request) -> web.Response:
        order.append("resolved")
        resolved.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/held", held)
    app.router.add_post("/resolved", on_resolved)
    async with serving(app) as server:
        result = await run_node(str(server.make_url("/held")), "held")
    assert result == {"reason": "stop", "text": "done"}
    assert order == ["resolved"]
