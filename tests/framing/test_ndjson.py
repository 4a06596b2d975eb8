"""NDJSONDecoder: every chunk boundary, line endings, blank lines, UTF-8 splits, bounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.errors import UpstreamProtocolError
from gateway.framing import Message, new_decoder
from gateway.framing.ndjson import NDJSONDecoder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def run(chunks: list[bytes], decoder: NDJSONDecoder | None = None) -> list[Message]:
    dec = decoder if decoder is not None else NDJSONDecoder()
    out: list[Message] = []
    for chunk in chunks:
        out.extend(dec.feed(chunk))
    out.extend(dec.close())
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def messages(*lines: str) -> list[Message]:
    return [Message("", line) for line in lines]


def test_registry_builds_ndjson_decoder() -> None:
    assert isinstance(new_decoder("ndjson"), NDJSONDecoder)


@pytest.mark.parametrize("name", ["ollama_chat.ndjson", "ollama_generate.ndjson"])
def test_fixture_at_every_split_and_bytewise(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    want = messages(*(line for line in data.decode().split("\n") if line))
    assert len(want) > 2
    assert all(isinstance(json.loads(m.data), dict) for m in want)
    assert run([data]) == want
    assert run(bytewise(data)) == want
    for i in range(len(data) + 1):
        assert run([data[:i], data[i:]]) == want, f"split at {i}"


def test_lines_are_returned_as_soon_as_complete() -> None:
    dec = NDJSONDecoder()
    assert dec.feed(b'{"a":1}\n{"b"') == messages('{"a":1}')
    assert dec.feed(b":2}") == []
    assert dec.feed(b"\n") == messages('{"b":2}')
    assert dec.close() == []


def test_crlf_lines() -> None:
    data = b'{"a":1}\r\n{"b":2}\r\n'
    for i in range(len(data) + 1):
        assert run([data[:i], data[i:]]) == messages('{"a":1}', '{"b":2}')


def test_lone_cr_inside_a_line_is_not_a_line_end() -> None:
    assert run([b'{"a":"x\ry"}\n']) == messages('{"a":"x\ry"}')


def test_blank_and_whitespace_lines_are_skipped() -> None:
    data = b'\n\n{"a":1}\n  \t \n\r\n{"b":2}\n\n \n'
    assert run([data]) == messages('{"a":1}', '{"b":2}')
    assert run(bytewise(data)) == messages('{"a":1}', '{"b":2}')


def test_split_multibyte_character() -> None:
    text = '{"t":"h\u00e9\u20ac\U0001f600"}'
    data = (text + "\n").encode()
    for i in range(len(data) + 1):
        assert run([data[:i], data[i:]]) == messages(text)


def test_invalid_utf8_is_replaced() -> None:
    assert run([b'{"t":"\xff"}\n']) == messages('{"t":"\ufffd"}')


def test_unicode_separators_do_not_split() -> None:
    text = '{"t":"a\u2028b\x85c"}'
    assert run(bytewise((text + "\n").encode())) == messages(text)


def test_trailing_line_without_newline_is_emitted_at_close() -> None:
    dec = NDJSONDecoder()
    assert dec.feed(b'{"a":1}\n{"done":true}') == messages('{"a":1}')
    assert dec.close() == messages('{"done":true}')
    assert dec.close() == []


def test_trailing_cr_without_lf_is_stripped_at_close() -> None:
    assert run([b'{"a":1}\r']) == messages('{"a":1}')


def test_trailing_whitespace_at_close_is_skipped() -> None:
    assert run([b'{"a":1}\n  ']) == messages('{"a":1}')


def test_line_at_limit_passes_and_over_limit_raises() -> None:
    assert run([b"a" * 100 + b"\n"], NDJSONDecoder(max_message_bytes=100)) == messages("a" * 100)
    with pytest.raises(UpstreamProtocolError, match="larger than 100 bytes"):
        NDJSONDecoder(max_message_bytes=100).feed(b"a" * 101 + b"\n")


def test_over_limit_bytewise_raises_at_the_bound() -> None:
    dec = NDJSONDecoder(max_message_bytes=100)
    for _ in range(100):
        assert dec.feed(b"a") == []
    with pytest.raises(UpstreamProtocolError) as info:
        dec.feed(b"a")
    assert info.value.error_code == "upstream_protocol"


def test_over_limit_unterminated_tail_raises_after_the_good_lines() -> None:
    dec = NDJSONDecoder(max_message_bytes=100)
    assert dec.feed(b'{"a":1}\n' + b"b" * 101) == [Message("", '{"a":1}')]
    with pytest.raises(UpstreamProtocolError):
        dec.close()
    with pytest.raises(UpstreamProtocolError):
        dec.feed(b"\n")


@pytest.mark.parametrize("split", [None, 3, 8, 20])
def test_good_lines_before_an_oversize_line_are_delivered_however_reads_split(
    split: int | None,
) -> None:
    data = b'{"a":1}\n{"b":2}\n' + b"x" * 150 + b"\n"
    dec = NDJSONDecoder(max_message_bytes=100)
    got: list[Message] = []
    with pytest.raises(UpstreamProtocolError):
        for chunk in [data] if split is None else [data[:split], data[split:]]:
            got += dec.feed(chunk)
        got += dec.close()
    assert got == [Message("", '{"a":1}'), Message("", '{"b":2}')]


def test_200_kib_line_passes_with_default_limit() -> None:
    line = json.dumps({"x": "y" * (200 * 1024)})
    data = (line + "\n").encode()
    assert run([data[i : i + 1000] for i in range(0, len(data), 1000)]) == messages(line)
