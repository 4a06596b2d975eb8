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

from gateway.framing.base import DEFAULT_MAX_MESSAGE_BYTES, RAW_EVENT, Decoder, Message
from gateway.framing.eventstream import EventStreamDecoder
from gateway.framing.ndjson import NDJSONDecoder
from gateway.framing.sse import SSEDecoder

__all__ = [
    "DECODERS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "RAW_EVENT",
    "Decoder",
    "Message",
    "new_decoder",
]

DecoderFactory = Callable[[int], Decoder]


def _sse(max_message_bytes: int) -> Decoder:
    return SSEDecoder(max_message_bytes)


def _sse_raw(max_message_bytes: int) -> Decoder:
    return SSEDecoder(max_message_bytes=max_message_bytes, raw_lines=True)


def _ndjson(max_message_bytes: int) -> Decoder:
    return NDJSONDecoder(max_message_bytes)


def _aws_eventstream(max_message_bytes: int) -> Decoder:
    return EventStreamDecoder(max_message_bytes)


DECODERS: dict[str, DecoderFactory] = {
    "sse": _sse,
    "sse+raw": _sse_raw,
    "ndjson": _ndjson,
    "aws-eventstream": _aws_eventstream,
}


def new_decoder(name: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Decoder:
    """A fresh decoder for framing ``name`` (a key of :data:`DECODERS`)."""
    return DECODERS[name](max_message_bytes)
