"""Pass-through under the stream's bounds: ``max_output_bytes`` per event, and a drain that
keeps no frames (gateway.passthrough, gateway.encoders.passthrough, gateway.stream.drain)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.adapters import ADAPTERS
from gateway.passthrough import FrameTap, TappedPipeline
from gateway.stream.drain import drain
from tests.adapters.harness import fixture_bytes, make_adapter
from tests.faults.kit import SSE, post
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway, wait_for

LIMIT = 4096
TEXT = "y" * 100


def sse(event: str, doc: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(doc)}\n\n".encode()


MESSAGES_HEAD = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 3, "output_tokens": 1},
        },
    },
) + sse(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
MESSAGES_DELTA = sse(
    "content_block_delta",
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TEXT}},
)
RESPONSE = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
RESPONSES_HEAD = sse(
    "response.created", {"type": "response.created", "sequence_number": 0, "response": RESPONSE}
) + sse(
    "response.output_item.added",
    {
        "type": "response.output_item.added",
        "sequence_number": 1,
        "output_index": 0,
        "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": []},
    },
)
RESPONSES_DELTA = sse(
    "response.output_text.delta",
    {
        "type": "response.output_text.delta",
        "sequence_number": 2,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": TEXT,
    },
)
CASES = {
    "messages": ("anthropic", "/v1/messages", MESSAGES_HEAD, MESSAGES_DELTA, b"event: error"),
    "responses": (
        "openai-responses",
        "/v1/responses",
        RESPONSES_HEAD,
        RESPONSES_DELTA,
        b"event: response.failed",
    ),
}


@pytest.mark.parametrize("per_read", [1, 40, 400], ids=["1-per-read", "40-per-read", "400"])
@pytest.mark.parametrize("api", sorted(CASES))
async def test_max_output_bytes_holds_per_event_on_pass_through(api: str, per_read: int) -> None:
    """At most the limit plus one event (one upstream frame), however many frames a read holds:
    the frames go out with the event they produced, not all with the first event of a batch."""
    provider, path, head, delta, error = CASES[api]
    fake = await FakeUpstream().start()
    burst = delta * per_read
    fake.default = Script(chunks=[(0, head + burst)], headers=SSE, endless=(0.001, burst))
    route = {
        "name": "r",
        "provider": provider,
        "upstream": {"base_url": fake.url, "api_key": "sk-test-key", "model": "m"},
        "max_output_bytes": LIMIT,
    }
    body = {"model": "r", "max_tokens": 64, "stream": True}
    body |= {"messages": [{"role": "user", "content": "hi"}]} if api == "messages" else {}
    body |= {"input": "hi"} if api == "responses" else {}
    try:
        async with running_gateway({"routes": [route]}) as gw:
            reply = await post(f"{gw.url}{path}", body)
            await wait_for(lambda: fake.seen[0].closed_at is not None, 2)
    finally:
        await fake.stop()
    raw = reply.raw
    assert raw.count(error) == 1 and b"exceeded" in raw[raw.index(error) :]
    before_error = raw[: raw.index(error)]
    assert before_error.startswith(head)  # the upstream's own frames, as they are
    assert len(before_error) <= LIMIT + len(delta)
    assert len(before_error) > LIMIT  # it streamed up to the bound, then one event more


def test_a_stopped_tap_keeps_no_frames_and_the_pipeline_translates_on() -> None:
    data = fixture_bytes("anthropic_thinking_tool_use.sse")
    adapter = make_adapter(ADAPTERS["anthropic"], model="m")
    kept, stopped = FrameTap("messages"), FrameTap("messages")
    events = TappedPipeline(adapter, kept).feed(data)
    pipe = TappedPipeline(adapter, stopped)
    stopped.stop()
    assert pipe.feed(data) == events and events[-1].type == "end"
    assert stopped.frames == [] and stopped.anchors == [] and len(kept.frames) > 0


def test_a_drain_stops_the_tap_before_reading_on() -> None:
    """``on_client_abort: drain``: the frames read after the client left go nowhere."""
    tap = FrameTap("messages")
    tap.open(live=True)
    source: Any = SimpleNamespace(attempt=SimpleNamespace(tap=tap))
    record: Any = SimpleNamespace(usage={}, content_writes=0)
    coroutine = drain(source, record, 1.0, "rid")
    coroutine.close()  # not run: stopping is part of handing the source over
    assert tap.stopped
    untapped: Any = SimpleNamespace(attempt=SimpleNamespace(tap=None))
    drain(untapped, record, 1.0, "rid").close()  # no pass-through: nothing to stop
