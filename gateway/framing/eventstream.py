"""Incremental decoder for the binary event-stream framing (``application/vnd.amazon.eventstream``).

Each message is one self-delimiting binary frame, all integers big-endian::

    [u32 total length][u32 headers length][u32 CRC32 of the first 8 bytes]
    [headers][payload][u32 CRC32 of everything before it]

A header is ``[u8 name length][name][u8 value type][value]``; the value layout depends on the
type (0/1 booleans with no bytes, 2-5 integers of 1/2/4/8 bytes, 6/7 bytes/string with a u16
length, 8 timestamp of 8 bytes, 9 UUID of 16 bytes). Only string headers carry meaning here
(``:message-type``, ``:event-type``, ``:exception-type``, ``:error-code``, ``:error-message``);
the others are parsed only to skip them.

The prelude is checked as soon as its 12 bytes are in, so a corrupt or oversized frame is
rejected before its body is buffered: memory stays bounded by ``max_message_bytes``.
"""

from __future__ import annotations

import zlib

from gateway.errors import UpstreamProtocolError, UpstreamTruncated
from gateway.framing.base import DEFAULT_MAX_MESSAGE_BYTES, Message

_PRELUDE = 12
_MIN_FRAME = _PRELUDE + 4
_FIXED_SIZES = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_STRING = 7
_BYTES = 6


def _u32(buf: bytes | bytearray, at: int) -> int:
    return int.from_bytes(buf[at : at + 4], "big")


def _headers(raw: bytes) -> dict[str, str]:
    """String-valued headers of one frame; other types are skipped. Raises on a malformed block."""
    out: dict[str, str] = {}
    pos, end = 0, len(raw)
    try:
        while pos < end:
            name_len = raw[pos]
            name = raw[pos + 1 : pos + 1 + name_len].decode("utf-8", "replace")
            pos += 1 + name_len
            kind = raw[pos]
            pos += 1
            if kind in (_STRING, _BYTES):
                size = int.from_bytes(raw[pos : pos + 2], "big")
                pos += 2
                if kind == _STRING:
                    out[name] = raw[pos : pos + size].decode("utf-8", "replace")
                pos += size
            elif kind in _FIXED_SIZES:
                pos += _FIXED_SIZES[kind]
            else:
                raise UpstreamProtocolError(f"event-stream header {name!r} has unknown type {kind}")
    except IndexError:
        raise UpstreamProtocolError("event-stream header block is truncated") from None
    if pos != end:
        raise UpstreamProtocolError("event-stream header block overruns its length")
    return out


def _message(headers: dict[str, str], payload: str) -> Message:
    kind = headers.get(":message-type", "event")
    if kind == "event":
        return Message(headers.get(":event-type", ""), payload)
    if kind == "exception":
        return Message("exception:" + headers.get(":exception-type", ""), payload)
    if kind == "error":
        # Transport-level errors carry their text in headers, not in the payload.
        return Message("error:" + headers.get(":error-code", ""), headers.get(":error-message", ""))
    raise UpstreamProtocolError(f"event-stream frame has unknown :message-type {kind!r}")


class EventStreamDecoder:
    """Bytes of a binary event stream in, one :class:`Message` per frame out.

    ``feed(data)`` returns the messages completed by ``data``; any split of the byte stream gives
    the same messages. An ``event`` frame becomes ``Message(<:event-type>, <payload text>)``, an
    ``exception`` frame ``Message("exception:" + <:exception-type>, <payload text>)``, an ``error``
    frame ``Message("error:" + <:error-code>, <:error-message>)``. Payloads are decoded as UTF-8
    (invalid bytes replaced) only once their frame is complete and verified.

    Errors (:class:`~gateway.errors.UpstreamProtocolError`): a prelude or message CRC32 mismatch,
    a total length below 16 bytes or above ``max_message_bytes``, a headers length that does not
    fit the frame, a malformed header block, an unknown message type. ``close()`` at EOF returns
    nothing; bytes of an incomplete frame left over raise
    :class:`~gateway.errors.UpstreamTruncated`. When a chunk completes good frames and then hits
    an error, the good frames are returned and the error is raised by the next ``feed`` or
    ``close``. After an error the decoder must not be used again.
    """

    __slots__ = ("_buf", "_error", "_max", "_total")

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_message_bytes
        self._error: UpstreamProtocolError | None = None
        # Verified total length of the frame at the head of the buffer; 0 until its prelude is in.
        self._total = 0

    def feed(self, data: bytes) -> list[Message]:
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        out: list[Message] = []
        pos = 0
        size = len(buf)
        try:
            while True:
                if not self._total:
                    if size - pos < _PRELUDE:
                        break
                    self._total = self._prelude(pos)
                total = self._total
                if size - pos < total:
                    break
                out.append(self._frame(pos, total))
                pos += total
                self._total = 0
        except UpstreamProtocolError as exc:
            if not out:
                raise
            # Deliver the good frames that came before the bad one in this chunk; the error
            # follows on the next call, so the outcome does not depend on how bytes were split.
            self._error = exc
        if pos:
            del buf[:pos]
        return out

    def close(self) -> list[Message]:
        if self._error is not None:
            raise self._error
        if self._buf:
            raise UpstreamTruncated("the upstream event stream ended inside a frame")
        return []

    def _prelude(self, pos: int) -> int:
        buf = self._buf
        total = _u32(buf, pos)
        headers_len = _u32(buf, pos + 4)
        if zlib.crc32(buf[pos : pos + 8]) != _u32(buf, pos + 8):
            raise UpstreamProtocolError("event-stream prelude CRC32 mismatch")
        if total > self._max:
            raise UpstreamProtocolError(f"event-stream frame larger than {self._max} bytes")
        if total < _MIN_FRAME or headers_len > total - _MIN_FRAME:
            raise UpstreamProtocolError("event-stream frame has inconsistent lengths")
        return total

    def _frame(self, pos: int, total: int) -> Message:
        frame = bytes(self._buf[pos : pos + total])
        if zlib.crc32(frame[:-4]) != _u32(frame, total - 4):
            raise UpstreamProtocolError("event-stream message CRC32 mismatch")
        headers_end = _PRELUDE + _u32(frame, 4)
        headers = _headers(frame[_PRELUDE:headers_end])
        return _message(headers, frame[headers_end:-4].decode("utf-8", "replace"))
