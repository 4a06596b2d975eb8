"""Incremental newline-delimited JSON framing: one message per LF-terminated line.

Works on bytes and decodes UTF-8 per complete line, so a character split across reads is never
decoded in halves (LF and CR are ASCII and never part of a multi-byte sequence). The JSON itself
is not parsed here: the adapter parses each line once.
"""

from __future__ import annotations

from gateway.errors import UpstreamProtocolError
from gateway.framing.base import DEFAULT_MAX_MESSAGE_BYTES, Message

_CR = 0x0D


class NDJSONDecoder:
    """Bytes of an NDJSON stream in, one ``Message("", line)`` per non-blank line out.

    Lines end at LF; one trailing CR is removed (CRLF lines). Empty and ASCII-whitespace-only lines
    are skipped. Invalid UTF-8 becomes U+FFFD. ``feed(data)`` returns the lines completed by
    ``data``; ``close()`` (EOF) returns the final line when it had no LF, to be lenient.

    Bounds: a line longer than ``max_message_bytes`` raises
    :class:`~gateway.errors.UpstreamProtocolError`; an incomplete line is never buffered past the
    bound. After an error every further call raises it again.
    """

    __slots__ = ("_buf", "_error", "_max")

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._max = max_message_bytes
        self._buf = bytearray()  # the incomplete last line (holds no LF)
        self._error: UpstreamProtocolError | None = None

    def feed(self, data: bytes) -> list[Message]:
        """Decode one read; return the lines it completes. Raises ``UpstreamProtocolError``.

        Lines completed before a bad line in the same read are returned; the error is raised by
        the next ``feed`` or ``close``, so the result does not depend on how reads split.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except UpstreamProtocolError as exc:
            self._error = exc  # sticky: every later call raises it too
            raise

    def _feed(self, data: bytes) -> list[Message]:
        buf = self._buf
        if data.find(b"\n") < 0:
            # Inside one line: append without rescanning what is buffered.
            self._check(len(buf) + len(data))
            buf += data
            return []
        if buf:
            data = bytes(buf) + data
            buf.clear()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when data ends with LF
        out: list[Message] = []
        try:
            self._messages(lines, out)
            if tail:
                self._check(len(tail))
                buf += tail
        except UpstreamProtocolError as exc:
            self._error = exc
            if not out:
                raise
        return out

    def close(self) -> list[Message]:
        """End of stream: the unterminated final line, if it is not blank."""
        if self._error is not None:
            raise self._error
        tail = bytes(self._buf)
        self._buf.clear()
        out: list[Message] = []
        self._messages([tail], out)
        return out

    def _check(self, size: int) -> None:
        if size > self._max:
            raise UpstreamProtocolError(f"upstream NDJSON line larger than {self._max} bytes")

    def _messages(self, lines: list[bytes], out: list[Message]) -> None:
        for line in lines:
            if not line or line.isspace():
                continue
            if len(line) > self._max:
                self._check(len(line))
            if line[-1] == _CR:
                line = line[:-1]
            out.append(Message("", line.decode("utf-8", "replace")))
