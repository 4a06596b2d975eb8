"""Incremental ``text/event-stream`` decoder (WHATWG HTML "Interpreting an event stream").

Works on bytes and decodes UTF-8 only per complete value. That is exact, not an approximation:
CR, LF, ``:`` and space are ASCII, so they never occur inside a multi-byte sequence, and an invalid
sequence never swallows them, so splitting before decoding gives the same text (and the same
U+FFFD replacements) as decoding the whole stream first. It also means a character split across
reads is never decoded in halves: only complete lines are decoded.

``bytes.splitlines`` breaks at exactly CR, LF and CRLF (unlike ``str.splitlines``, it ignores
U+2028, U+2029, U+0085 and the other Unicode separators), so it is the spec's line splitter, in C.
"""

from __future__ import annotations

from gateway.errors import UpstreamProtocolError
from gateway.framing.base import DEFAULT_MAX_MESSAGE_BYTES, RAW_EVENT, Message

_BOM = b"\xef\xbb\xbf"
_CR = 0x0D
_LF = 0x0A
_COLON = 0x3A
_SPACE = 0x20


def _too_large(limit: int) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"upstream SSE event larger than {limit} bytes")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


_new = tuple.__new__


class SSEDecoder:
    """Bytes of an event stream in, dispatched events out; any split of the input gives the same.

    ``feed(data)`` returns the events completed by ``data`` (each as ``Message(type, data,
    last_event_id)``, type ``"message"`` when no ``event:`` field was given). ``close()`` signals
    EOF: an unterminated line and an undispatched event are discarded, as the spec says.
    :attr:`retry` holds the last valid ``retry:`` value (milliseconds) or ``None``;
    :attr:`last_event_id` the last event ID buffer.

    Bounds: a line, or the data of one event, longer than ``max_message_bytes`` raises
    :class:`~gateway.errors.UpstreamProtocolError`; an incomplete line is never buffered past the
    bound. After an error the decoder must not be used again.

    ``raw_lines=True`` opens a side channel for text outside the framing (pretty-printed JSON
    errors between events): lines that are neither comments nor ``data``/``event``/``id``/``retry``
    fields are collected and emitted, joined by LF, as ``Message(RAW_EVENT, text, last_event_id)``
    at the next blank line (after the block's own event, if any) or at ``close()``. At ``close()``
    an unterminated final line is collected too when it is such a line, since raw text has no
    framing that could tell it is complete. With ``raw_lines=False`` those lines are ignored.
    """

    __slots__ = (
        "_at_start",
        "_buf",
        "_data",
        "_data_len",
        "_error",
        "_event",
        "_head",
        "_max",
        "_raw",
        "_raw_len",
        "_raw_lines",
        "_skip_lf",
        "last_event_id",
        "retry",
    )

    def __init__(
        self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, raw_lines: bool = False
    ) -> None:
        self._max = max_message_bytes
        self._raw_lines = raw_lines
        self._at_start = True  # the leading BOM is still undecided
        self._head = b""  # the first bytes of the stream while they could be a split BOM
        self._buf = bytearray()  # the incomplete last line (holds no CR or LF)
        self._skip_lf = False  # the previous read ended with CR: a leading LF completes a CRLF
        self._data: list[bytes] = []
        self._data_len = 0
        self._event = b""
        self._raw: list[str] = []
        self._raw_len = 0
        self._error: UpstreamProtocolError | None = None
        self.last_event_id = ""
        self.retry: int | None = None

    def feed(self, data: bytes) -> list[Message]:
        """Decode one read; return the events it completes. Raises ``UpstreamProtocolError``.

        Events completed before a bad line in the same read are returned; the error is raised
        by the next ``feed`` or ``close``, so the result does not depend on how reads split.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except UpstreamProtocolError as exc:
            self._error = exc  # sticky: every later call raises it too
            raise

    def _feed(self, data: bytes) -> list[Message]:
        if self._at_start:
            data = self._strip_bom(data)
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == _LF:
                data = data[1:]
        if not data:
            return []
        buf = self._buf
        if buf:
            if data.find(b"\n") < 0 and data.find(b"\r") < 0:
                # Still inside one long line: append without rescanning what is buffered.
                self._check_line(len(buf) + len(data))
                buf += data
                return []
            data = bytes(buf) + data
            buf.clear()
        tail = None
        if _CR not in data:  # LF only, as nearly every upstream sends: split finds them with
            lines = data.split(b"\n")  # memchr, splitlines byte by byte (an int is memchr too)
            tail = lines.pop() or None  # the line after the last LF (b"": none)
        else:
            lines = data.splitlines()
            last = data[-1]
            if last == _CR:
                self._skip_lf = True
            elif last != _LF:
                tail = lines.pop()
        out = self._lines(lines) if lines else []
        if tail is not None:
            try:
                self._check_line(len(tail))
            except UpstreamProtocolError as exc:
                return self._defer(exc, out)
            buf += tail
        return out

    def close(self) -> list[Message]:
        """End of stream: discard the unterminated event; flush collected raw lines (if enabled)."""
        if self._error is not None:
            raise self._error
        out: list[Message] = []
        tail = self._head + bytes(self._buf)
        if self._raw_lines:
            if tail and tail[0] != _COLON and self._field_name(tail) not in _FIELDS:
                self._add_raw(tail)
            if self._raw:
                out.append(self._flush_raw())
        self._head = b""
        self._buf.clear()
        self._data = []
        self._data_len = 0
        self._event = b""
        return out

    def _strip_bom(self, data: bytes) -> bytes:
        head = self._head + data if self._head else data
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._head = head  # could still become a BOM: decide on the next read
            return b""
        self._at_start = False
        self._head = b""
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _check_line(self, size: int) -> None:
        if size > self._max:
            raise _too_large(self._max)

    def _defer(self, exc: UpstreamProtocolError, out: list[Message]) -> list[Message]:
        """Keep the events decoded before ``exc``; raise it on the next call."""
        self._error = exc
        if not out:
            raise exc
        return out

    def _lines(self, lines: list[bytes]) -> list[Message]:
        out: list[Message] = []
        try:
            self._decode_lines(lines, out)
        except UpstreamProtocolError as exc:
            return self._defer(exc, out)
        return out

    def _decode_lines(self, lines: list[bytes], out: list[Message]) -> None:
        # The hot path (a ``data:`` line, then the blank line that dispatches it) stays in this
        # loop: the event's data and size as locals, the dispatch written out, the message made
        # with ``tuple.__new__`` (a NamedTuple's own constructor is a Python function).
        limit = self._max
        data = self._data  # the same list as ``self._data``: ``_field`` may append to it
        size = self._data_len
        append = out.append
        for line in lines:
            if not line:
                if data:
                    raw = data[0] if len(data) == 1 else b"\n".join(data)
                    event = self._event
                    kind = event.decode("utf-8", "replace") if event else "message"
                    text = raw.decode("utf-8", "replace")  # ``_text``, written out
                    append(_new(Message, (kind, text, self.last_event_id)))
                    data.clear()
                    size = 0
                self._event = b""
                if self._raw:
                    append(self._flush_raw())
                continue
            if len(line) > limit:
                self._check_line(len(line))
            if line.startswith(b"data:"):
                value = line[6:] if len(line) > 5 and line[5] == _SPACE else line[5:]
                size += len(value) + 1
                if size > limit:
                    raise _too_large(limit)
                data.append(value)
            elif line[0] != _COLON:
                self._data_len = size
                self._field(line)
                size = self._data_len
        self._data_len = size

    @staticmethod
    def _field_name(line: bytes) -> bytes:
        colon = line.find(b":")
        return line if colon < 0 else line[:colon]

    def _field(self, line: bytes) -> None:
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name = line[:colon]
            start = colon + 2 if line[colon + 1 : colon + 2] == b" " else colon + 1
            value = line[start:]
        if name == b"event":
            self._event = value
        elif name == b"data":  # "data" without a colon: an empty data line
            self._data_len += 1
            if self._data_len > self._max:
                raise _too_large(self._max)
            self._data.append(value)
        elif name == b"id":
            if b"\x00" not in value:
                self.last_event_id = _text(value)
        elif name == b"retry":
            if value.isdigit():  # bytes.isdigit is ASCII-only, as the spec wants
                self.retry = int(value)
        elif self._raw_lines:
            self._add_raw(line)

    def _add_raw(self, line: bytes) -> None:
        self._raw_len += len(line) + 1
        if self._raw_len > self._max:
            raise _too_large(self._max)
        self._raw.append(_text(line))

    def _flush_raw(self) -> Message:
        text = "\n".join(self._raw)
        self._raw = []
        self._raw_len = 0
        return Message(RAW_EVENT, text, self.last_event_id)


_FIELDS = frozenset({b"data", b"event", b"id", b"retry"})
