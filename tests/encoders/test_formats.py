"""The ``tokens``, ``text`` and ``ndjson`` encoders without a server (contract section 5)."""

from __future__ import annotations

import json

import pytest

from gateway import events as ev
from gateway.encoders import ENCODERS
from gateway.encoders.ndjson import NDJSONEncoder
from gateway.encoders.text import TextEncoder
from gateway.encoders.tokens import TokensEncoder
from gateway.events import Event
from tests.support.gateway import config_from

ROUTE = config_from({"routes": [{"name": "r", "provider": "simulated"}]}).routes[0]
MARKED = config_from(
    {
        "routes": [
            {
                "name": "r",
                "provider": "simulated",
                "format": "text",
                "text_markers": {"created": "[C]", "thinking": "[T]", "end": "[E]", "error": "[X]"},
            }
        ]
    }
).routes[0]
# Every line terminator a parser might honour, plus the ones SSE must not (U+2028/2029, NEL).
NASTY = "a\nb\rc\r\nd\u2028e\u2029f\x85g"


def sample() -> list[Event]:
    return [
        ev.created("rid", "r", "simulated", None),
        ev.thinking(),
        ev.reasoning(NASTY),
        ev.clear(),
        ev.delta(NASTY),
        ev.tool_call(0, '{"a":"\\n"}', id="c1", name="f"),
        ev.usage(input_tokens=1, output_tokens=2),
        ev.error("upstream_error", NASTY, True),
    ]


def sse_frames(raw: bytes) -> list[dict[str, str]]:
    """Strict SSE: frames split on blank lines; every line splits only on LF, never CR."""
    text = raw.decode()
    assert "\r" not in text
    out = []
    for block in text.split("\n\n"):
        if not block or block.startswith(":"):
            continue
        out.append(dict(line.split(": ", 1) for line in block.split("\n")))
    return out


def test_registry_has_every_format() -> None:
    assert {"tokens", "text", "ndjson", "ai-sdk"} <= set(ENCODERS)
    for name, cls in ENCODERS.items():
        assert cls.name == name


def test_tokens_frames_ids_and_payload() -> None:
    enc = TokensEncoder(ROUTE, "rid")
    raw = b"".join(enc.encode(e) for e in sample())
    got = sse_frames(raw)
    assert [f["id"] for f in got] == [str(i) for i in range(1, 9)]
    assert [f["event"] for f in got] == [e.type for e in sample()]
    assert json.loads(got[4]["data"]) == {"text": NASTY}
    assert json.loads(got[2]["data"]) == {"text": NASTY}
    assert json.loads(got[7]["data"])["message"] == NASTY
    assert enc.heartbeat() == b": ping\n\n"
    assert enc.close() == b""


def test_payload_newlines_can_never_break_a_frame() -> None:
    """CR and LF are escaped by JSON; U+2028/U+2029/NEL stay raw, which SSE and NDJSON allow."""
    for cls in (TokensEncoder, NDJSONEncoder):
        raw = b"".join(cls(ROUTE, "rid").encode(e) for e in sample())
        assert b"\r" not in raw
        body = raw.decode()
        if cls is TokensEncoder:
            assert body.count("\n\n") == len(sample())
            assert all(len(block.split("\n")) == 3 for block in body.split("\n\n")[:-1])
        else:
            assert body.count("\n") == len(sample())


def test_ndjson_lines() -> None:
    enc = NDJSONEncoder(ROUTE, "rid")
    lines = b"".join(enc.encode(e) for e in sample()).split(b"\n")
    assert lines[-1] == b""
    docs = [json.loads(line) for line in lines[:-1]]
    assert [d["type"] for d in docs] == [e.type for e in sample()]
    assert docs[4] == {"type": "delta", "text": NASTY}
    assert docs[5] == {
        "type": "tool_call",
        "index": 0,
        "id": "c1",
        "name": "f",
        "arguments": '{"a":"\\n"}',
    }
    assert enc.heartbeat() == b"\n"  # an empty line, which NDJSON readers skip
    assert NDJSONEncoder.content_type == "application/x-ndjson"


def test_an_ndjson_error_line_keeps_its_type_and_the_provider_s_as_error_type() -> None:
    enc = NDJSONEncoder(ROUTE, "rid")
    error = ev.error("upstream_error", "boom", True, type="overloaded_error")
    assert json.loads(enc.encode(error)) == {
        "type": "error",
        "code": "upstream_error",
        "message": "boom",
        "retryable": True,
        "error_type": "overloaded_error",
    }


def test_text_is_only_the_visible_text_by_default() -> None:
    enc = TextEncoder(ROUTE, "rid")
    assert b"".join(enc.encode(e) for e in sample()) == NASTY.encode()
    assert enc.heartbeat() == b""
    assert TextEncoder.content_type == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("terminal", "marker"), [(ev.end("stop"), b"[E]"), (ev.error("internal", "x", False), b"[X]")]
)
def test_text_markers(terminal: Event, marker: bytes) -> None:
    enc = TextEncoder(MARKED, "rid")
    events = [ev.created("rid", "r", "simulated", None), ev.thinking(), ev.clear(), ev.delta("hi")]
    assert b"".join(enc.encode(e) for e in [*events, terminal]) == b"[C][T]hi" + marker
