"""``simulated``: a built-in model with no network, so the demo route works with no API key.

It streams a configured text (or generated lorem ipsum, or an echo of the last user message),
optionally preceded by reasoning, at a configured pace, through the same framing and translation
path as a real provider: :meth:`SimulatedAdapter.build_request` returns a :class:`LocalScript` of
NDJSON lines that the I/O edge plays with the given delays.

Options (all optional)::

    text: "Hello!"            # the visible text; default: generated words
    echo: false               # answer with the last user message instead
    words: 60                 # how many generated words when no text is given
                              # (the request's max_tokens caps the answer's pieces: then the
                              # stream ends with reason ``length``, as a real model's would)
    reasoning: true           # true (generated) or a text streamed as reasoning first
    first_token_delay: 300ms  # silence before the first event
    token_interval: 30ms      # between events
    fail_after: 0             # if > 0: emit an upstream error after this many text pieces
    truncate_after: 0         # if > 0: stop without a terminator after this many text pieces

The wire lines are ``{"r": text}`` (reasoning), ``{"t": text}`` (text), ``{"e": message}``
(error) and ``{"done": reason, "usage": {...}}`` (terminator).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway import events as ev
from gateway.adapters._kit import (
    OptionTable,
    boolean,
    load_object,
    non_negative_int,
    typed,
    validate_options,
)
from gateway.adapters.base import Adapter, LocalScript, Translator
from gateway.config.units import parse_duration
from gateway.errors import UpstreamError
from gateway.events import USAGE_FIELDS, Event
from gateway.framing import Message
from gateway.jsonutil import dumps
from gateway.request import ChatRequest, parse_request

_LOREM = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "ut",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "ut",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "dolor",
    "in",
    "reprehenderit",
    "in",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "dolore",
    "eu",
    "fugiat",
    "nulla",
    "pariatur",
    "excepteur",
    "sint",
    "occaecat",
    "cupidatat",
]
_REASONING = "The user asked a question. I will think about it briefly, then answer in plain words."
_PIECE = re.compile(r"\S+\s*|\s+")

_DURATIONS = ("first_token_delay", "token_interval")


def _duration(value: Any) -> str | None:
    try:
        parse_duration(value)
    except ValueError as exc:
        return str(exc)
    return None


def _reasoning(value: Any) -> str | None:
    return None if isinstance(value, bool | str) else "must be true, false or a text"


_OPTIONS: OptionTable = {
    "text": (None, typed(str)),
    "echo": (False, boolean),
    "words": (60, non_negative_int),
    "reasoning": (False, _reasoning),
    "first_token_delay": (0.3, _duration),
    "token_interval": (0.03, _duration),
    "fail_after": (0, non_negative_int),
    "truncate_after": (0, non_negative_int),
}


def _lorem(n: int, seed: int) -> str:
    # A stride prime to the list's length walks all of it before repeating (a stride of 7 in
    # 56 words repeated the same 8 words over and over).
    words = [_LOREM[(seed + i * 5) % len(_LOREM)] for i in range(n)]
    if words:
        words[0] = words[0].capitalize()
    return " ".join(words) + "."


def _pieces(text: str) -> list[str]:
    """Split text into word-sized pieces (word plus its trailing space), like model tokens."""
    return _PIECE.findall(text)


class SimulatedAdapter(Adapter):
    name = "simulated"
    framing = "ndjson"
    needs_upstream = False
    option_table = _OPTIONS

    @classmethod
    def parse_options(
        cls, options: Mapping[str, Any], path: str
    ) -> tuple[dict[str, Any], list[str]]:
        """The option table, then durations in seconds (the table checked them)."""
        # The base's check called directly: compiled (gateway.native), ``super()`` in a
        # classmethod would hand the base the metaclass, not ``cls``.
        out, errors = validate_options(cls.name, options, path, cls.option_table)
        for key in _DURATIONS:
            out[key] = parse_duration(out[key])
        return out, errors

    def build_request(self, request: ChatRequest) -> LocalScript:
        opts = self.options
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        if opts["echo"]:
            text = last_user
        elif opts["text"] is not None:
            text = opts["text"]
        else:
            text = _lorem(opts["words"], seed=len(last_user))
        reasoning = opts["reasoning"]
        reasoning_text = _REASONING if reasoning is True else (reasoning or "")

        first, gap = opts["first_token_delay"], opts["token_interval"]
        chunks: list[tuple[float, bytes]] = []

        def line(obj: dict[str, Any]) -> None:
            chunks.append((first if not chunks else gap, dumps(obj) + b"\n"))

        for piece in _pieces(reasoning_text):
            line({"r": piece})
        pieces = _pieces(text)
        finish = "stop"
        if request.max_tokens is not None and len(pieces) > request.max_tokens:
            pieces, finish = pieces[: request.max_tokens], "length"
        for n, piece in enumerate(pieces, 1):
            line({"t": piece})
            if n == opts["fail_after"]:
                line({"e": "simulated upstream failure"})
                return LocalScript(tuple(chunks))
            if n == opts["truncate_after"]:
                return LocalScript(tuple(chunks))
        input_tokens = sum(len(_pieces(m.content)) for m in request.messages)
        reasoning_tokens = len(_pieces(reasoning_text))
        line(
            {
                "done": finish,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": len(pieces) + reasoning_tokens,
                    "reasoning_tokens": reasoning_tokens,
                },
            }
        )
        return LocalScript(tuple(chunks))

    def build_native_request(self, body: dict[str, Any]) -> LocalScript:
        return self.build_request(parse_request(body))

    def new_translator(self) -> Translator:
        return _SimulatedTranslator()


_USAGE_KEYS = USAGE_FIELDS


class _SimulatedTranslator(Translator):
    def feed(self, message: Message) -> list[Event]:
        obj = load_object(message.data, "simulated")  # a non-object: found by fuzz_pipeline.py
        if isinstance(piece := obj.get("t"), str):
            return [ev.delta(piece)]
        if isinstance(piece := obj.get("r"), str):
            return [ev.reasoning(piece)]
        if "e" in obj:
            self.finished = True
            raise UpstreamError(str(obj["e"]), retryable=True)
        if "done" in obj:
            self.finished = True
            usage = obj.get("usage")
            counts = (
                {k: v for k, v in usage.items() if isinstance(v, int) and k in _USAGE_KEYS}
                if isinstance(usage, dict)
                else {}
            )
            done = str(obj["done"])
            reason: ev.FinishReason = "length" if done == "length" else "stop"
            return [ev.usage(**counts), ev.end(reason, done)]
        return []
