"""The AWS event-stream decoder: every split, CRCs, bounds, header types, EOF."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from botocore.eventstream import EventStreamBuffer

from gateway.errors import UpstreamProtocolError, UpstreamTruncated
from gateway.framing import Message, new_decoder
from gateway.framing.eventstream import EventStreamDecoder
from tests.framing.aws_frames import event, exception, exception_stream, frame

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURES = [
    "bedrock_converse_stream.bin",
    "bedrock_converse_stream_exception.bin",
]


def fixture_bytes(name: str) -> bytes:
    return (FIXTURE_DIR / name).read_bytes()


def decode(chunks: list[bytes], max_bytes: int = 1 << 20) -> list[Message]:
    decoder = EventStreamDecoder(max_bytes)
    out: list[Message] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.close())
    return out


def botocore_messages(data: bytes) -> list[Message]:
    """The same stream as botocore reads it: the reference decoder."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    out = []
    for msg in buffer:
        headers = msg.headers
        payload = msg.payload.decode()
        if headers[":message-type"] == "event":
            out.append(Message(headers[":event-type"], payload))
        else:
            out.append(Message("exception:" + headers[":exception-type"], payload))
    return out


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_matches_botocore(name: str) -> None:
    data = fixture_bytes(name)
    expected = botocore_messages(data)
    assert len(expected) > 3
    assert decode([data]) == expected


@pytest.mark.parametrize("name", FIXTURES)
def test_every_split_point_gives_the_same_messages(name: str) -> None:
    data = fixture_bytes(name)
    whole = decode([data])
    for cut in range(1, len(data)):
        assert decode([data[:cut], data[cut:]]) == whole, cut


@pytest.mark.parametrize("name", FIXTURES)
def test_bytewise_and_three_way_splits(name: str) -> None:
    data = fixture_bytes(name)
    whole = decode([data])
    assert decode([data[i : i + 1] for i in range(len(data))]) == whole
    for step in (2, 3, 5, 7, 13, 64):
        assert decode([data[i : i + step] for i in range(0, len(data), step)]) == whole
    assert decode([b"", data, b""]) == whole


def test_fixture_content() -> None:
    messages = decode([fixture_bytes("bedrock_converse_stream.bin")])
    assert messages[0] == Message("messageStart", '{"role":"assistant","p":"a"}')
    assert [m.event for m in messages[-2:]] == ["messageStop", "metadata"]
    assert all(m.id == "" for m in messages)


def test_exception_frame() -> None:
    data = exception("throttlingException", {"message": "slow down"})
    assert decode([data]) == [Message("exception:throttlingException", '{"message":"slow down"}')]


def test_error_frame_takes_its_text_from_headers() -> None:
    data = frame(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    assert decode([data]) == [Message("error:InternalFailure", "boom")]


def test_unknown_message_type_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError, match="message-type"):
        decode([frame({":message-type": "weird"}, b"{}")])


def test_frame_without_headers_is_an_untyped_event() -> None:
    assert decode([frame({}, b"x")]) == [Message("", "x")]


def test_non_string_headers_are_skipped() -> None:
    headers = [
        ("t", 0, b""),
        ("f", 1, b""),
        ("b", 2, b"\x01"),
        ("s", 3, b"\x00\x02"),
        ("i", 4, b"\x00\x00\x00\x03"),
        ("l", 5, b"\x00" * 8),
        ("raw", 6, b"\xff\x00"),
        ("ts", 8, b"\x00" * 8),
        ("uuid", 9, b"\x11" * 16),
        (":event-type", 7, "contentBlockStop"),
        (":message-type", 7, "event"),
    ]
    assert decode([frame(headers, b"{}")]) == [Message("contentBlockStop", "{}")]


def test_unknown_header_type_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError, match="unknown type"):
        decode([frame([("x", 42, b"")], b"{}")])


@pytest.mark.parametrize(
    "block",
    [
        b"\x05ab",  # name longer than the block
        b"\x01x\x07\x00\x09abc",  # string value longer than the block
        b"\x01x\x04\x00",  # int value cut short
    ],
)
def test_malformed_header_block_is_a_protocol_error(block: bytes) -> None:
    total = 12 + len(block) + 2 + 4
    prelude = struct.pack(">II", total, len(block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + block + b"{}"
    data = body + struct.pack(">I", zlib.crc32(body))
    with pytest.raises(UpstreamProtocolError, match="header"):
        decode([data])


def test_invalid_utf8_in_payload_is_replaced() -> None:
    data = frame({":event-type": "e"}, b"a\xffb")
    assert decode([data]) == [Message("e", "a\ufffdb")]


@pytest.mark.parametrize("offset", [0, 3, 5, 9])
def test_prelude_corruption_is_detected(offset: int) -> None:
    data = bytearray(event("messageStart", {"role": "assistant"}))
    data[offset] ^= 0x01
    with pytest.raises(UpstreamProtocolError, match="prelude CRC32"):
        decode([bytes(data)])


@pytest.mark.parametrize("from_end", [1, 4, 5, 10, 30])
def test_message_corruption_is_detected(from_end: int) -> None:
    good = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}})
    data = bytearray(good + good)
    data[len(good) - from_end] ^= 0x80
    decoder = EventStreamDecoder()
    with pytest.raises(UpstreamProtocolError, match="message CRC32"):
        decoder.feed(bytes(data))


def test_second_frame_corruption_after_a_good_one() -> None:
    good = event("messageStart", {"role": "assistant"})
    bad = bytearray(good)
    bad[-6] ^= 0x01
    decoder = EventStreamDecoder()
    assert decoder.feed(good) == [Message("messageStart", '{"role":"assistant"}')]
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(bytes(bad))


def _prelude(total: int, headers_len: int) -> bytes:
    head = struct.pack(">II", total, headers_len)
    return head + struct.pack(">I", zlib.crc32(head))


def test_oversize_frame_is_rejected_from_its_prelude_alone() -> None:
    decoder = EventStreamDecoder(max_message_bytes=1000)
    assert decoder.feed(_prelude(1001, 0)[:11]) == []
    with pytest.raises(UpstreamProtocolError, match="larger than 1000"):
        decoder.feed(_prelude(1001, 0)[11:])


def test_frame_at_the_bound_is_accepted() -> None:
    data = frame({":event-type": "e"}, b"")
    payload = b"x" * (100 - len(data))
    data = frame({":event-type": "e"}, payload)
    assert len(data) == 100
    assert decode([data], max_bytes=100) == [Message("e", payload.decode())]
    with pytest.raises(UpstreamProtocolError, match="larger than 99"):
        decode([data], max_bytes=99)


@pytest.mark.parametrize(("total", "headers_len"), [(0, 0), (15, 0), (20, 5), (16, 0xFFFFFFFF)])
def test_inconsistent_lengths_are_rejected(total: int, headers_len: int) -> None:
    with pytest.raises(UpstreamProtocolError, match="inconsistent lengths"):
        EventStreamDecoder().feed(_prelude(total, headers_len) + b"\x00" * 16)


def test_minimal_empty_frame_is_accepted() -> None:
    assert decode([frame({}, b"")]) == [Message("", "")]


def test_close_inside_a_frame_is_truncation() -> None:
    data = exception_stream()
    decoder = EventStreamDecoder()
    decoder.feed(data[:-1])
    with pytest.raises(UpstreamTruncated):
        decoder.close()
    partial_prelude = EventStreamDecoder()
    assert partial_prelude.feed(data[:5]) == []
    with pytest.raises(UpstreamTruncated):
        partial_prelude.close()


def test_close_on_a_frame_boundary_is_clean() -> None:
    decoder = EventStreamDecoder()
    assert decoder.close() == []
    decoder.feed(event("messageStart", {}))
    assert decoder.close() == []


def test_registered_as_aws_eventstream() -> None:
    decoder = new_decoder("aws-eventstream", 4096)
    assert isinstance(decoder, EventStreamDecoder)
    with pytest.raises(UpstreamProtocolError, match="larger than 4096"):
        decoder.feed(_prelude(4097, 0))


def test_good_frames_before_a_bad_one_are_delivered_whatever_the_split() -> None:
    good = event("messageStart", {"role": "assistant"})
    bad = bytearray(event("contentBlockStop", {}))
    bad[-1] ^= 0x01
    data = good + bytes(bad)
    for cut in range(len(data) + 1):
        decoder = EventStreamDecoder()
        got: list[Message] = []
        with pytest.raises(UpstreamProtocolError, match="message CRC32"):
            for chunk in (data[:cut], data[cut:]):
                got.extend(decoder.feed(chunk))
            decoder.close()
        assert got == [Message("messageStart", '{"role":"assistant"}')], cut
    decoder = EventStreamDecoder()
    assert decoder.feed(data) == [Message("messageStart", '{"role":"assistant"}')]
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(b"")
    with pytest.raises(UpstreamProtocolError):
        decoder.close()
