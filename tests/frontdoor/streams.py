"""Upstream bodies the front-door tests replay that no recorded fixture covers."""

from __future__ import annotations

import json
from typing import Any


def sse(*events: dict[str, Any]) -> bytes:
    """Messages-style SSE frames: ``event: <type>`` and the event as ``data``."""
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def _tool_use(index: int, call_id: str, name: str, *pieces: str) -> list[dict[str, Any]]:
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    deltas = [
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "input_json_delta", "partial_json": p},
        }
        for p in pieces
    ]
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *deltas,
        {"type": "content_block_stop", "index": index},
    ]


NO_ARGUMENTS = sse(
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    },
    # A tool without input streams one empty input_json_delta (as Claude does), or none.
    *_tool_use(0, "toolu_a", "now", ""),
    *_tool_use(1, "toolu_b", "get_weather", '{"city":', '"Rome"}'),
    *_tool_use(2, "toolu_c", "now"),
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 9},
    },
    {"type": "message_stop"},
)
"""A Messages upstream calling ``now`` (no arguments), ``get_weather``, then ``now`` again."""

NO_ARGUMENTS_CALLS = [("toolu_a", "{}"), ("toolu_b", '{"city":"Rome"}'), ("toolu_c", "{}")]
"""What a client must see for :data:`NO_ARGUMENTS`: call ids and arguments, in order."""

STRICT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": props,
                "required": list(props),
                "additionalProperties": False,
            },
        },
    }
    for name, props in (("now", {}), ("get_weather", {"city": {"type": "string"}}))
]
"""Chat Completions tools for :data:`NO_ARGUMENTS`, strict so the SDK parses the arguments."""
