"""Incremental framing decoders: upstream bytes in, whole messages out. Pure: no I/O, no asyncio.

Every decoder has the same shape (like h11's ``receive_data``)::

    decoder.feed(data: bytes) -> list[Message]   # any split of the bytes: the same messages
    decoder.close() -> list[Message]             # end of stream: flush what the format allows

Buffers are bounded: a message or line longer than ``max_message_bytes`` raises
:class:`gateway.errors.UpstreamProtocolError` instead of growing without limit. After an error the
decoder must not be fed again.

The registry maps the name an adapter declares in ``Adapter.framing`` to a decoder factory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Default bound for one message or line. Generous: real thought signatures exceed 128 KiB."""

RAW_EVENT = "\x00raw"
"""``Message.event`` of text outside the framing (e.g. pretty-printed JSON between SSE events)."""


class Message(NamedTuple):
    """One framed upstream message.

    ``event`` is the SSE event type (``"message"`` when none was given), ``""`` for NDJSON lines,
    or :data:`RAW_EVENT` for text outside the framing. ``data`` is the payload text. ``id`` is the
    SSE last event id at dispatch (``""`` elsewhere).
    """

    event: str
    data: str
    id: str = ""


class Decoder(Protocol):
    def feed(self, data: bytes) -> list[Message]: ...

    def close(self) -> list[Message]: ...


DecoderFactory = Callable[[int], Decoder]


def _sse(max_message_bytes: int) -> Decoder:
    from gateway.framing.sse import SSEDecoder

    return SSEDecoder(max_message_bytes=max_message_bytes)


def _sse_raw(max_message_bytes: int) -> Decoder:
    from gateway.framing.sse import SSEDecoder

    return SSEDecoder(max_message_bytes=max_message_bytes, raw_lines=True)


def _ndjson(max_message_bytes: int) -> Decoder:
    from gateway.framing.ndjson import NDJSONDecoder

    return NDJSONDecoder(max_message_bytes=max_message_bytes)


def _aws_eventstream(max_message_bytes: int) -> Decoder:
    from gateway.framing.eventstream import EventStreamDecoder

    return EventStreamDecoder(max_message_bytes=max_message_bytes)


DECODERS: dict[str, DecoderFactory] = {
    "sse": _sse,
    "sse+raw": _sse_raw,
    "ndjson": _ndjson,
    "aws-eventstream": _aws_eventstream,
}


def new_decoder(name: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Decoder:
    """A fresh decoder for framing ``name`` (a key of :data:`DECODERS`)."""
    return DECODERS[name](max_message_bytes)
