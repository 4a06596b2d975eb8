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
