"""A detached stream (``on_client_abort: detach``) keeps its own bounds after its client left:
``max_output_bytes``, the upstream's ``idle`` silence, ``max_stream_duration``. Before, only
``resume.window`` ended it: the record grew past ``max_output_bytes`` and a silent upstream
was held for the whole window. Real gateway, real sockets, a fake upstream."""

from __future__ import annotations

from typing import Any

from tests.faults.kit import chat_chunk
from tests.resume.test_gateway import CUTS, PATH, cut_after, parse, resume, route
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway, wait_for

WINDOW = {"enabled": True, "window": "30s"}
"""Far longer than every bound here: only the stream's own bound can end it in time."""


def _detached(upstream: FakeUpstream, **extra: Any) -> dict[str, Any]:
    return {"routes": [route(upstream, on_client_abort="detach", resume=WINDOW, **extra)]}


async def _terminal(url: str, stream_id: str) -> tuple[list[Any], int]:
    status, raw, _ = await resume(f"{url}{PATH}/{stream_id}", 0)
    assert status == 200
    frames = parse(raw)
    assert [f[0] for f in frames] == list(range(1, len(frames) + 1))
    assert sum(k in ("end", "error") for _, k, _ in frames) == 1
    return frames, len(raw)


async def test_max_output_bytes_ends_a_detached_stream(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0.0, chat_chunk("go "))], endless=(0.005, chat_chunk("x" * 50))))
    async with running_gateway(_detached(upstream, max_output_bytes=3000)) as gw:
        stream_id, _, _ = await cut_after(gw.url + PATH, CUTS["mid_text"])
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 5)
        frames, size = await _terminal(gw.url, stream_id)
        assert frames[-1][1] == "error" and frames[-1][2]["code"] == "limit_exceeded"
        assert size < 3000 + 500  # the bound plus at most one event and the terminal
        await wait_for(lambda: not gw.state.sessions, 2)


async def test_a_silent_upstream_ends_a_detached_stream_after_idle(
    upstream: FakeUpstream,
) -> None:
    chunks = [(0.0, chat_chunk("go ")), (0.01, chat_chunk("a")), (0.01, chat_chunk("b"))]
    upstream.push(Script(chunks=chunks, hang_after=True))
    async with running_gateway(_detached(upstream, timeouts={"idle": "300ms"})) as gw:
        stream_id, _, _ = await cut_after(gw.url + PATH, lambda fs: len(fs) >= 2)
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 5)
        frames, _ = await _terminal(gw.url, stream_id)
        assert frames[-1][1] == "error" and frames[-1][2]["code"] == "upstream_timeout"
        assert "".join(d["text"] for _, k, d in frames if k == "delta") == "go ab"


async def test_max_stream_duration_ends_a_detached_stream(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0.0, chat_chunk("go "))], endless=(0.02, chat_chunk("x"))))
    async with running_gateway(_detached(upstream, max_stream_duration="1s")) as gw:
        stream_id, _, _ = await cut_after(gw.url + PATH, CUTS["mid_text"])
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 5)
        frames, _ = await _terminal(gw.url, stream_id)
        assert frames[-1][1] == "error" and frames[-1][2]["code"] == "limit_exceeded"
        assert "max_stream_duration" in frames[-1][2]["message"]
