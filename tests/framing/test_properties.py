"""Property tests: chunking never changes what the decoders produce; garbage never crashes them."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import UpstreamProtocolError
from gateway.framing import Message
from gateway.framing.ndjson import NDJSONDecoder
from gateway.framing.sse import SSEDecoder

PROPERTY_SETTINGS = settings(max_examples=150, deadline=1000)

# Text with what makes SSE hard: line breaks inside data, Unicode separators, NUL, astral chars.
_TRICKY = "\n\r\u2028\u2029\x85\x0b\x0c\x1c\x00:\ufeff \u00e9\u20ac\U0001f600"
data_text = st.text(
    alphabet=st.one_of(st.sampled_from(_TRICKY), st.characters(exclude_categories=["Cs"])),
    max_size=40,
)
field_text = data_text.map(lambda s: re.sub(r"[\r\n]", "", s))
line_ending = st.sampled_from(["\n", "\r", "\r\n"])


@dataclass
class Event:
    data: str
    type: str
    id: str | None


events = st.lists(
    st.builds(
        Event,
        data=data_text,
        type=field_text,
        id=st.none() | field_text.map(lambda s: s.replace("\x00", "")),
    ),
    max_size=6,
)


def serialise(evs: list[Event], endings: list[str], bom: bool) -> bytes:
    """SSE text for ``evs``; the i-th line ends with ``endings[i % len(endings)]``."""
    lines: list[str] = []
    for e in evs:
        if e.type:
            lines.append(f"event: {e.type}")
        if e.id is not None:
            lines.append(f"id: {e.id}")
        lines.append(": a comment")
        lines.extend(f"data: {part}" for part in re.split(r"\r\n|\r|\n", e.data))
        lines.append("")
    out: list[str] = ["\ufeff"] if bom else []
    prev = ""
    for i, line in enumerate(lines):
        end = endings[i % len(endings)]
        if prev == "\r" and not line and end == "\n":
            end = "\r\n"  # CR then a bare LF would merge into one CRLF and lose the blank line
        out.append(line + end)
        prev = end
    return "".join(out).encode()


def model(evs: list[Event]) -> list[Message]:
    """What the spec says a browser dispatches for ``serialise(evs, ...)``."""
    out: list[Message] = []
    last_id = ""
    for e in evs:
        if e.id is not None:
            last_id = e.id
        data = "\n".join(re.split(r"\r\n|\r|\n", e.data))
        out.append(Message(e.type or "message", data, last_id))
    return out


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *sorted({p % (len(data) + 1) for p in points}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def decode(dec: SSEDecoder | NDJSONDecoder, chunks: list[bytes]) -> list[Message] | str:
    """The messages, or the error message if the decoder rejected the input."""
    out: list[Message] = []
    try:
        for chunk in chunks:
            out.extend(dec.feed(chunk))
        out.extend(dec.close())
    except UpstreamProtocolError as exc:
        return exc.message
    return out


@PROPERTY_SETTINGS
@given(
    evs=events,
    endings=st.lists(line_ending, min_size=1, max_size=4),
    bom=st.booleans(),
    points=st.lists(st.integers(min_value=0), max_size=12),
)
def test_sse_any_chunking_gives_the_spec_messages(
    evs: list[Event], endings: list[str], bom: bool, points: list[int]
) -> None:
    data = serialise(evs, endings, bom)
    whole = decode(SSEDecoder(), [data])
    assert whole == model(evs)
    assert decode(SSEDecoder(), cut(data, points)) == whole


# Byte soup biased towards SSE syntax, BOM pieces, CR/LF and broken UTF-8.
_TOKENS = [
    b"data",
    b"event",
    b"id",
    b"retry",
    b":",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\xef\xbb\xbf",
    b"\xef",
    b"\xe2\x80",
    b"\xa8",
    b"\x00",
    b"7",
    b"{",
    b"x" * 30,
]
soup = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(_TOKENS), max_size=60).map(b"".join),
)


@PROPERTY_SETTINGS
@given(
    data=soup,
    points=st.lists(st.integers(min_value=0), max_size=12),
    raw=st.booleans(),
    limit=st.sampled_from([16, 64, 4096]),
)
def test_sse_random_bytes_only_raise_protocol_errors_and_ignore_chunking(
    data: bytes, points: list[int], raw: bool, limit: int
) -> None:
    whole = decode(SSEDecoder(limit, raw_lines=raw), [data])
    assert decode(SSEDecoder(limit, raw_lines=raw), cut(data, points)) == whole
    if isinstance(whole, list):
        assert all(isinstance(m.data, str) for m in whole)


@PROPERTY_SETTINGS
@given(
    data=soup,
    points=st.lists(st.integers(min_value=0), max_size=12),
    limit=st.sampled_from([16, 64, 4096]),
)
def test_ndjson_random_bytes_only_raise_protocol_errors_and_ignore_chunking(
    data: bytes, points: list[int], limit: int
) -> None:
    whole = decode(NDJSONDecoder(limit), [data])
    assert decode(NDJSONDecoder(limit), cut(data, points)) == whole
    if isinstance(whole, list):
        assert all(m.data.strip(" \t\r\x0b\x0c") and "\n" not in m.data for m in whole)


@PROPERTY_SETTINGS
@given(
    lines=st.lists(field_text, max_size=8),
    crlf=st.booleans(),
    points=st.lists(st.integers(min_value=0), max_size=12),
)
def test_ndjson_any_chunking_gives_each_nonblank_line(
    lines: list[str], crlf: bool, points: list[int]
) -> None:
    end = "\r\n" if crlf else "\n"
    data = "".join(line + end for line in lines).encode()
    want = [Message("", line) for line in lines if line.strip(" \t\x0b\x0c")]
    assert decode(NDJSONDecoder(), cut(data, points)) == want
