"""The token protocol, version 1: the events every adapter produces and every encoder consumes.

An :class:`Event` is a type name and a JSON-ready ``data`` dict (contract section 5). Adapters
build them with the constructors below; nothing else in the gateway invents event shapes.

=============  ===============================================================  ==========
type           data                                                             kind
=============  ===============================================================  ==========
created        id, route, provider, model                                       control
thinking       {}                                                               control
reasoning      text                                                             content
clear          {}                                                               control
delta          text                                                             content
tool_call      index, id?, name?, arguments                                     content
usage          input_tokens?, output_tokens?, reasoning_tokens?, cache...?      control
end            reason (stop|length|tool_calls|content_filter|other), provider_reason?  terminal
error          code, message, retryable, type?                                  terminal
=============  ===============================================================  ==========
"""

from __future__ import annotations

from typing import Any, Final, Literal

CREATED: Final = "created"
THINKING: Final = "thinking"
REASONING: Final = "reasoning"
CLEAR: Final = "clear"
DELTA: Final = "delta"
TOOL_CALL: Final = "tool_call"
USAGE: Final = "usage"
END: Final = "end"
ERROR: Final = "error"

EVENT_TYPES: Final = (CREATED, THINKING, REASONING, CLEAR, DELTA, TOOL_CALL, USAGE, END, ERROR)
CONTENT_TYPES: Final = frozenset({REASONING, DELTA, TOOL_CALL})
TERMINAL_TYPES: Final = frozenset({END, ERROR})

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]
FINISH_REASONS: Final = ("stop", "length", "tool_calls", "content_filter", "other")
USAGE_FIELDS: Final = (
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cached_input_tokens",
    "cache_read_input_tokens",
    "cache_write_input_tokens",
)
"""Every count a ``usage`` event may carry (contract sections 5 and 13), in wire order.

``input_tokens`` is all the input, cached or not; ``cache_read_input_tokens`` the part read from
the provider's prompt cache and ``cache_write_input_tokens`` the part written to it.
``cached_input_tokens`` (section 5's name) always equals ``cache_read_input_tokens``."""


class Event:
    """One token-protocol event. Treat as immutable; ``data`` is JSON-serialisable."""

    __slots__ = ("data", "type")

    def __init__(self, type: str, data: dict[str, Any]) -> None:
        self.type = type
        self.data = data

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.type == self.type and other.data == self.data

    def __hash__(self) -> int:  # pragma: no cover - events are not meant as dict keys
        return hash(self.type)

    def __repr__(self) -> str:
        return f"Event({self.type!r}, {self.data!r})"


_EMPTY: dict[str, Any] = {}
_THINKING = Event(THINKING, _EMPTY)
_CLEAR = Event(CLEAR, _EMPTY)
"""Events without data are immutable values: one of each serves every stream."""


def created(request_id: str, route: str, provider: str, model: str | None) -> Event:
    return Event(CREATED, {"id": request_id, "route": route, "provider": provider, "model": model})


def thinking() -> Event:
    return _THINKING


def clear() -> Event:
    return _CLEAR


def reasoning(text: str) -> Event:
    return Event(REASONING, {"text": text})


def delta(text: str) -> Event:
    return Event(DELTA, {"text": text})


def tool_call(
    index: int, arguments: str, *, id: str | None = None, name: str | None = None
) -> Event:
    """A piece of tool call ``index``; ``id`` and ``name`` go on the first piece of an index."""
    data: dict[str, Any] = {"index": index}
    if id is not None:
        data["id"] = id
    if name is not None:
        data["name"] = name
    data["arguments"] = arguments
    return Event(TOOL_CALL, data)


def usage(
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    cached_input_tokens: int | None = None,
    cache_read_input_tokens: int | None = None,
    cache_write_input_tokens: int | None = None,
) -> Event:
    """Token counts; a field left ``None`` is unknown and omitted.

    ``cached_input_tokens`` and ``cache_read_input_tokens`` are one count under two names: give
    either (``cache_read_input_tokens`` wins when both are given) and the event carries both.
    """
    data: dict[str, Any] = {}
    if input_tokens is not None:
        data["input_tokens"] = int(input_tokens)
    if output_tokens is not None:
        data["output_tokens"] = int(output_tokens)
    if reasoning_tokens is not None:
        data["reasoning_tokens"] = int(reasoning_tokens)
    read = cache_read_input_tokens if cache_read_input_tokens is not None else cached_input_tokens
    if read is not None:
        data["cached_input_tokens"] = data["cache_read_input_tokens"] = int(read)
    if cache_write_input_tokens is not None:
        data["cache_write_input_tokens"] = int(cache_write_input_tokens)
    return Event(USAGE, data)


def end(reason: FinishReason, provider_reason: str | None = None) -> Event:
    data: dict[str, Any] = {"reason": reason}
    if provider_reason is not None:
        data["provider_reason"] = provider_reason
    return Event(END, data)


def error(code: str, message: str, retryable: bool, **extra: Any) -> Event:
    return Event(ERROR, {"code": code, "message": message, "retryable": retryable, **extra})
