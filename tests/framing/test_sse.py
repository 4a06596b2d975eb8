"""SSEDecoder: WHATWG conformance vectors at every chunk boundary, bounds, raw-line side channel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import UpstreamProtocolError
from gateway.framing import DEFAULT_MAX_MESSAGE_BYTES, RAW_EVENT, Message, new_decoder
from gateway.framing.sse import SSEDecoder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VECTORS: list[dict[str, Any]] = json.loads((FIXTURES / "sse_vectors.json").read_text())["vectors"]


def run(chunks: list[bytes], decoder: SSEDecoder | None = None) -> tuple[list[Message], SSEDecoder]:
    dec = decoder if decoder is not None else SSEDecoder()
    out: list[Message] = []
    for chunk in chunks:
        out.extend(dec.feed(chunk))
    out.extend(dec.close())
    return out, dec


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def expected(vector: dict[str, Any]) -> list[Message]:
    return [Message(e["type"], e["data"], e["lastEventId"]) for e in vector["expected_events"]]


def check(vector: dict[str, Any], chunks: list[bytes], how: str) -> None:
    out, dec = run(chunks)
    assert out == expected(vector), how
    assert dec.retry == vector["expected_retry"], how


by_name = pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])


def chunks_of(vector: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(h) for h in vector["chunks_hex"]]


def test_vectors_are_loaded() -> None:
    assert len(VECTORS) == 45


@by_name
def test_vector_as_given(vector: dict[str, Any]) -> None:
    check(vector, chunks_of(vector), "as given")


@by_name
def test_vector_whole(vector: dict[str, Any]) -> None:
    check(vector, [b"".join(chunks_of(vector))], "whole")


@by_name
def test_vector_bytewise(vector: dict[str, Any]) -> None:
    check(vector, bytewise(b"".join(chunks_of(vector))), "bytewise")


@by_name
def test_vector_every_split_point(vector: dict[str, Any]) -> None:
    data = b"".join(chunks_of(vector))
    for i in range(len(data) + 1):
        check(vector, [data[:i], data[i:]], f"split at {i}")


def test_registry_builds_sse_decoders() -> None:
    assert isinstance(new_decoder("sse"), SSEDecoder)
    raw = new_decoder("sse+raw")
    assert isinstance(raw, SSEDecoder)
    assert raw.feed(b"{\n\n") == [Message(RAW_EVENT, "{", "")]
    assert new_decoder("sse").feed(b"{\n\n") == []


def test_feed_returns_events_as_soon_as_complete() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: a\n") == []
    assert dec.feed(b"\ndata: b\n") == [Message("message", "a", "")]
    assert dec.feed(b"\r") == [Message("message", "b", "")]
    # The LF completing that CRLF must not count as a second blank line.
    assert dec.feed(b"\ndata: c\n\n") == [Message("message", "c", "")]


def test_close_discards_unterminated_event_and_resets() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"event: x\ndata: partial\n") == []
    assert dec.close() == []
    assert dec.close() == []


# --- bounds --------------------------------------------------------------------------------------


def test_default_limit_is_generous() -> None:
    assert DEFAULT_MAX_MESSAGE_BYTES >= 4 * 1024 * 1024


def test_200_kib_line_passes_with_default_limit() -> None:
    payload = "x" * (200 * 1024)
    data = f"data: {payload}\r\n\r\n".encode()
    out, _ = run([data[i : i + 4096] for i in range(0, len(data), 4096)])
    assert out == [Message("message", payload, "")]


def test_over_limit_line_raises() -> None:
    dec = SSEDecoder(max_message_bytes=1000)
    with pytest.raises(UpstreamProtocolError, match="larger than 1000 bytes"):
        dec.feed(b"data: " + b"x" * 1000 + b"\n\n")


def test_over_limit_comment_line_raises() -> None:
    dec = SSEDecoder(max_message_bytes=100)
    with pytest.raises(UpstreamProtocolError):
        dec.feed(b":" + b"x" * 200 + b"\n")


def test_over_limit_line_bytewise_raises_at_the_bound() -> None:
    limit = 1000
    dec = SSEDecoder(max_message_bytes=limit)
    line = b"data: " + b"x" * (limit - 6)
    for i in range(len(line)):  # exactly `limit` bytes buffered: still accepted
        assert dec.feed(line[i : i + 1]) == []
    with pytest.raises(UpstreamProtocolError, match=f"larger than {limit} bytes"):
        dec.feed(b"x")


def test_line_at_limit_passes() -> None:
    dec = SSEDecoder(max_message_bytes=100)
    line = b"data: " + b"y" * 94
    assert len(line) == 100
    assert dec.feed(line + b"\n\n") == [Message("message", "y" * 94, "")]


def test_accumulated_event_data_over_limit_raises() -> None:
    dec = SSEDecoder(max_message_bytes=1000)
    with pytest.raises(UpstreamProtocolError, match="SSE event larger than 1000 bytes"):
        for _ in range(20):  # each line is well under the limit, the event is not
            dec.feed(b"data: " + b"z" * 90 + b"\n")


def test_bare_data_lines_count_towards_the_event_limit() -> None:
    dec = SSEDecoder(max_message_bytes=100)
    with pytest.raises(UpstreamProtocolError):
        dec.feed(b"data\n" * 101)


def test_data_limit_is_per_event() -> None:
    dec = SSEDecoder(max_message_bytes=1000)
    out: list[Message] = []
    for _ in range(20):
        out.extend(dec.feed(b"data: " + b"z" * 600 + b"\n\n"))
    assert len(out) == 20


def test_error_is_an_upstream_protocol_error_with_its_code() -> None:
    dec = SSEDecoder(max_message_bytes=10)
    with pytest.raises(UpstreamProtocolError) as info:
        dec.feed(b"x" * 11)
    assert info.value.error_code == "upstream_protocol"
    assert info.value.retryable is False


# --- fields the vectors do not pin down on their own ---------------------------------------------


def test_retry_attribute_tracks_last_valid_value() -> None:
    dec = SSEDecoder()
    assert dec.retry is None
    dec.feed(b"retry: 1500\n")
    assert dec.retry == 1500
    dec.feed(b"retry: \xd9\xa3\n")  # ARABIC-INDIC DIGIT THREE is a digit, but not an ASCII one
    dec.feed(b"retry:\n")
    assert dec.retry == 1500
    dec.feed(b"retry:0\n")
    assert dec.retry == 0


def test_unicode_line_separators_stay_in_data() -> None:
    text = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg"
    out, _ = run(bytewise(f"data: {text}\n\n".encode()))
    assert out == [Message("message", text, "")]


def test_multibyte_split_and_invalid_utf8() -> None:
    data = "data: \U0001f600é\n\n".encode() + b"data: \xff\xe2\x82\n\n"
    for i in range(len(data) + 1):
        out, _ = run([data[:i], data[i:]])
        assert out == [
            Message("message", "\U0001f600é", ""),
            Message("message", "\ufffd\ufffd", ""),
        ]


# --- raw lines (text outside the SSE framing) ----------------------------------------------------

GEMINI_EVENT_1 = b'data: {"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"}}]}'
GEMINI_EVENT_2 = b'data: {"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"}}]}'
GEMINI_ERROR = (
    "{\n"
    '  "error": {\n'
    '    "code": 503,\n'
    '    "message": "The model is overloaded. Please try again later.",\n'
    '    "status": "UNAVAILABLE"\n'
    "  }\n"
    "}\n"
)
GEMINI_STREAM = GEMINI_EVENT_1 + b"\r\n\r\n" + GEMINI_EVENT_2 + b"\r\n\r\n" + GEMINI_ERROR.encode()


def test_raw_lines_collect_gemini_error_at_every_split() -> None:
    want = [
        Message("message", GEMINI_EVENT_1[6:].decode(), ""),
        Message("message", GEMINI_EVENT_2[6:].decode(), ""),
        Message(RAW_EVENT, GEMINI_ERROR.rstrip("\n"), ""),
    ]
    assert json.loads(want[2].data)["error"]["code"] == 503
    data = GEMINI_STREAM
    for i in range(len(data) + 1):
        out, _ = run([data[:i], data[i:]], SSEDecoder(raw_lines=True))
        assert out == want, f"split at {i}"
    out, _ = run(bytewise(data), SSEDecoder(raw_lines=True))
    assert out == want


def test_without_raw_lines_the_error_is_dropped_as_the_spec_says() -> None:
    out, _ = run([GEMINI_STREAM])
    assert [m.event for m in out] == ["message", "message"]


def test_raw_error_without_final_newline_is_flushed_at_close() -> None:
    data = GEMINI_EVENT_1 + b"\r\n\r\n" + GEMINI_ERROR.rstrip("\n").encode()
    out, _ = run([data], SSEDecoder(raw_lines=True))
    assert out[-1] == Message(RAW_EVENT, GEMINI_ERROR.rstrip("\n"), "")


def test_close_flushes_raw_but_discards_unterminated_event() -> None:
    dec = SSEDecoder(raw_lines=True)
    assert dec.feed(b"id: 7\ndata: kept\n\n") == [Message("message", "kept", "7")]
    assert dec.feed(b"oops not sse\ndata: unterminated\n") == []
    assert dec.close() == [Message(RAW_EVENT, "oops not sse", "7")]


def test_raw_lines_flush_at_blank_line_after_the_blocks_event() -> None:
    dec = SSEDecoder(raw_lines=True)
    out = dec.feed(b"data: a\nstray\r\n: comment\nevent: e\nanother: stray\n\n")
    assert out == [Message("e", "a", ""), Message(RAW_EVENT, "stray\nanother: stray", "")]
    assert dec.close() == []


def test_raw_lines_do_not_include_comments_or_known_fields() -> None:
    dec = SSEDecoder(raw_lines=True)
    assert dec.feed(b": ping\nretry: 10\nid: 3\nevent: x\n\n") == []
    assert dec.close() == []
    assert dec.retry == 10


def test_raw_lines_are_bounded() -> None:
    dec = SSEDecoder(max_message_bytes=100, raw_lines=True)
    with pytest.raises(UpstreamProtocolError):
        for _ in range(20):
            dec.feed(b"x" * 20 + b"\n")


@pytest.mark.parametrize("split", [None, 5, 17, 40])
def test_events_before_an_oversize_line_are_delivered_however_reads_split(
    split: int | None,
) -> None:
    data = b"data: one\n\ndata: two\n\ndata: " + b"x" * 200 + b"\n\n"
    dec = SSEDecoder(max_message_bytes=100)
    got: list[Message] = []
    with pytest.raises(UpstreamProtocolError):
        for chunk in [data] if split is None else [data[:split], data[split:]]:
            got += dec.feed(chunk)
        got += dec.close()
    assert [m.data for m in got] == ["one", "two"]
    with pytest.raises(UpstreamProtocolError):
        dec.feed(b"data: more\n\n")  # the error sticks
