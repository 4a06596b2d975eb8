"""What every framing decoder shares: the message type, the decoder shape, the default bound."""

from __future__ import annotations

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
