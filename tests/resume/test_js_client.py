"""gateway/static/gateway-client.js with ``resume: true`` (under node) against a stream that is
cut mid-way: it reconnects with ``Last-Event-ID`` and finishes, each event once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.resume.test_client_resume import Flaky, flaky  # noqa: F401 (fixture)
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
