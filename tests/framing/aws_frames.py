"""A small AWS event-stream frame encoder for tests (the gateway itself only decodes).

Run as a script to regenerate the hand-built Bedrock fixtures::

    .venv/bin/python -m tests.framing.aws_frames
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

HeaderValue = str | bytes | bool | int


def encode_headers(headers: dict[str, HeaderValue] | list[tuple[str, int, Any]]) -> bytes:
    """Encode headers. A dict maps names to str (type 7), bytes (6), bool (0/1) or int (4).

    A list of ``(name, type, value)`` gives full control (any type byte, raw value bytes).
    """
    items: list[tuple[str, int, Any]]
    if isinstance(headers, dict):
        items = []
        for name, value in headers.items():
            if isinstance(value, bool):
                items.append((name, 0 if value else 1, b""))
            elif isinstance(value, int):
                items.append((name, 4, struct.pack(">i", value)))
            elif isinstance(value, bytes):
                items.append((name, 6, value))
            else:
                items.append((name, 7, value))
    else:
        items = headers
    out = bytearray()
    for name, kind, value in items:
        raw_name = name.encode()
        out += bytes([len(raw_name)]) + raw_name + bytes([kind])
        if kind in (6, 7):
            raw = value.encode() if isinstance(value, str) else value
            out += struct.pack(">H", len(raw)) + raw
        else:
            out += value
    return bytes(out)


def frame(headers: dict[str, HeaderValue] | list[tuple[str, int, Any]], payload: bytes) -> bytes:
    """One complete frame with correct lengths and both CRC32s."""
    raw_headers = encode_headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    """An ``event`` frame the way Bedrock sends it (JSON payload, string headers)."""
    headers: dict[str, HeaderValue] = {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return frame(headers, json.dumps(payload, separators=(",", ":")).encode())


def exception(exception_type: str, payload: dict[str, Any]) -> bytes:
    """An ``exception`` frame (a modelled service error raised mid-stream)."""
    headers: dict[str, HeaderValue] = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, json.dumps(payload, separators=(",", ":")).encode())


def exception_stream() -> bytes:
    """Some text, then a throttlingException frame, then EOF (no messageStop)."""
    return b"".join(
        [
            event("messageStart", {"role": "assistant", "p": "abc"}),
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo ✓"}}),
            exception(
                "throttlingException",
                {"message": "Too many requests, please wait before trying again."},
            ),
        ]
    )


def truncated_stream() -> bytes:
    """Text, then the connection drops halfway through a frame (no messageStop)."""
    whole = b"".join(
        [
            event("messageStart", {"role": "assistant"}),
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Partial"}}),
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " answer"}}),
        ]
    )
    return whole[:-20]


def _write() -> None:  # pragma: no cover - a maintenance script
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    (fixtures / "bedrock_converse_stream_exception.bin").write_bytes(exception_stream())
    (fixtures / "bedrock_converse_stream_truncated.bin").write_bytes(truncated_stream())


if __name__ == "__main__":  # pragma: no cover
    _write()
