"""Interleaved tool calls in every streamed format: each call's arguments stay whole.

The token protocol lets pieces of several tool indexes interleave, the first piece of each
often empty (``id`` and ``name`` only), the arguments split anywhere (contract section 5, rule 2).
Each client format must give every call exactly its own arguments, as the official clients
rebuild them (the OpenAI SDK's stream helpers, fed the encoders' frames without a server).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway import events as ev
from gateway.encoders import ENCODERS
from gateway.events import Event
from tests.encoders.test_formats import ROUTE, sse_frames

WANT = {"c0": '{"a": [1, "x}"]}', "c1": '{"b":2}', "c2": "{}"}
"""The arguments of each call (``c2`` has none: it must come out as ``"{}"``)."""


def interleaved(split: int) -> list[Event]:
    """Three calls whose pieces interleave, the first piece of each empty."""
    a, b = WANT["c0"], WANT["c1"]
    return [
        ev.created("rid", "r", "simulated", None),
        ev.tool_call(0, "", id="c0", name="f"),
        ev.tool_call(1, "", id="c1", name="g"),
        ev.tool_call(2, "", id="c2", name="h"),
        ev.tool_call(0, a[:split]),
        ev.tool_call(1, b[:split]),
        ev.tool_call(0, a[split:]),
        ev.tool_call(1, b[split:]),
        ev.end("tool_calls"),
    ]


def encode(name: str, events: list[Event]) -> bytes:
    enc = ENCODERS[name](ROUTE, "rid")
    return b"".join(enc.encode(e) for e in events) + enc.close()


def datas(raw: bytes) -> list[Any]:
    return [json.loads(f["data"]) for f in sse_frames(raw) if f["data"] != "[DONE]"]


STRICT = [
    {
        "type": "function",
        "function": {"name": n, "strict": True, "parameters": {"type": "object"}},
    }
    for n in "fgh"
]

SPLITS = [0, 1, 3, 7]


@pytest.mark.parametrize("split", SPLITS)
def test_chat_chunks_give_each_call_its_own_arguments(split: int) -> None:
    """The SDK's helper closes a call when the next index starts: it must be whole by then."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState(input_tools=STRICT)  # type: ignore[arg-type]
    done = []
    for doc in datas(encode("chat-completions", interleaved(split))):
        for e in state.handle_chunk(ChatCompletionChunk.model_validate(doc)):
            if e.type == "tool_calls.function.arguments.done":
                done.append((e.index, e.arguments, e.parsed_arguments))
    calls = state.get_final_completion().choices[0].message.tool_calls or []
    assert {c.id: c.function.arguments for c in calls} == WANT
    assert done == [(i, WANT[f"c{i}"], json.loads(WANT[f"c{i}"])) for i in range(3)]


RESPONSE_EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


@pytest.mark.parametrize("split", SPLITS)
def test_responses_events_give_each_call_its_own_arguments(split: int) -> None:
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=None)  # type: ignore[arg-type]
    done, items = {}, {}
    final = None
    for doc in datas(encode("responses", interleaved(split))):
        for e in state.handle_event(RESPONSE_EVENTS.validate_python(doc)):
            if e.type == "response.function_call_arguments.done":
                done[e.item_id] = e.arguments
            elif e.type == "response.output_item.done":
                items[e.item.call_id] = e.item.arguments  # type: ignore[union-attr]
            elif e.type == "response.completed":
                final = e.response
    assert final is not None
    assert {o.call_id: o.arguments for o in final.output} == WANT  # type: ignore[union-attr]
    assert items == WANT
    assert sorted(done.values()) == sorted(WANT.values())


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", ["chat-completions-json", "responses-json", "messages-json"])
def test_whole_answers_give_each_call_its_own_arguments(name: str, split: int) -> None:
    doc = json.loads(encode(name, interleaved(split)))
    if name == "chat-completions-json":
        calls = doc["choices"][0]["message"]["tool_calls"]
        got = {c["id"]: json.loads(c["function"]["arguments"]) for c in calls}
    elif name == "responses-json":
        got = {o["call_id"]: json.loads(o["arguments"]) for o in doc["output"]}
    else:
        got = {b["id"]: b["input"] for b in doc["content"]}
    want = {k: json.loads(v) for k, v in WANT.items()}
    assert got == want


@pytest.mark.parametrize("split", SPLITS)
def test_messages_and_ai_sdk_give_each_call_its_own_arguments(split: int) -> None:
    pieces: dict[Any, str] = {}
    for doc in datas(encode("messages", interleaved(split))):
        if doc["type"] == "content_block_delta":
            pieces[doc["index"]] = pieces.get(doc["index"], "") + doc["delta"]["partial_json"]
    assert pieces == {0: WANT["c0"], 1: WANT["c1"]}  # a call without input streams no delta
    ui: dict[Any, Any] = {}
    for doc in datas(encode("ai-sdk", interleaved(split))):
        if doc["type"] == "tool-input-available":
            ui[doc["toolCallId"]] = doc["input"]
    assert ui == {k: json.loads(v) for k, v in WANT.items()}


def test_whole_json() -> None:
    from gateway.encoders.chat_completions import whole_json

    assert whole_json(['{"a":', "1}"]) and whole_json(["[1]  "]) and whole_json(["{}", " \n"])
    assert not whole_json(None) and not whole_json([]) and not whole_json(["", ""])
    assert not whole_json(['{"a": "}"']) and not whole_json(["{}", "{}"])


def test_ai_sdk_call_whose_arguments_go_on_after_text_keeps_its_part() -> None:
    """Text between two pieces of one call neither completes it half-written nor starts a
    second, nameless call for the rest of its arguments (what useChat showed as ``tool-``)."""
    events = [
        ev.created("rid", "r", "simulated", None),
        ev.tool_call(0, '{"a"', id="c0", name="f"),
        ev.delta("t"),
        ev.tool_call(0, ":1}"),
        ev.tool_call(1, "{}", id="c1", name="g"),
        ev.delta("u"),
        ev.end("tool_calls"),
    ]
    docs = datas(encode("ai-sdk", events))
    starts = [(d["toolCallId"], d["toolName"]) for d in docs if d["type"] == "tool-input-start"]
    assert starts == [("c0", "f"), ("c1", "g")]
    done = [(d["toolCallId"], d["input"]) for d in docs if d["type"] == "tool-input-available"]
    assert done == [("c0", {"a": 1}), ("c1", {})]
    kinds = [d["type"] for d in docs]
    assert kinds.index("tool-input-available") < kinds.index("text-start", kinds.index("text-end"))
