"""``simulated``: a built-in model with no network, so the demo route works with no API key.

It streams a configured text (or generated lorem ipsum, or an echo of the last user message),
optionally preceded by reasoning, at a configured pace, through the same framing and translation
path as a real provider: :meth:`SimulatedAdapter.build_request` returns a :class:`LocalScript` of
NDJSON lines that the I/O edge plays with the given delays.

Options (all optional)::

    text: "Hello!"            # the visible text; default: generated words
    echo: false               # answer with the last user message instead
    words: 60                 # how many generated words when no text is given
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
from gateway.adapters.base import Adapter, LocalScript, Translator
from gateway.config.units import parse_duration
from gateway.errors import UpstreamError, UpstreamProtocolError
from gateway.events import Event
from gateway.framing import Message
from gateway.jsonutil import dumps, loads
from gateway.request import ChatRequest

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

_DEFAULTS: dict[str, Any] = {
    "text": None,
    "echo": False,
    "words": 60,
    "reasoning": False,
    "first_token_delay": 0.3,
    "token_interval": 0.03,
    "fail_after": 0,
    "truncate_after": 0,
}


def _lorem(n: int, seed: int) -> str:
    words = [_LOREM[(seed + i * 7) % len(_LOREM)] for i in range(n)]
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

    @classmethod
    def parse_options(
        cls, options: Mapping[str, Any], path: str
    ) -> tuple[dict[str, Any], list[str]]:
        out = dict(_DEFAULTS)
        errors: list[str] = []
        for key, value in options.items():
            where = f"{path}.{key}"
            if key not in _DEFAULTS:
                errors.append(f"{where}: unknown option for provider 'simulated'")
            elif key in ("first_token_delay", "token_interval"):
                try:
                    out[key] = parse_duration(value)
                except ValueError as exc:
                    errors.append(f"{where}: {exc}")
            elif key in ("words", "fail_after", "truncate_after"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    errors.append(f"{where}: must be a non-negative integer")
                else:
                    out[key] = value
            elif key == "echo":
                if not isinstance(value, bool):
                    errors.append(f"{where}: must be true or false")
                else:
                    out[key] = value
            elif key == "reasoning":
                if not isinstance(value, bool | str):
                    errors.append(f"{where}: must be true, false or a text")
                else:
                    out[key] = value
            elif key == "text":
                if not isinstance(value, str):
                    errors.append(f"{where}: must be a string")
                else:
                    out[key] = value
        return out, errors

    def build_request(self, request: ChatRequest) -> LocalScript:
        opts = self.options
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        if opts["echo"]:
            text = last_user
        elif opts["text"] is not None:
            text = opts["text"]
        else:
            words = opts["words"]
            if request.max_tokens is not None:
                words = min(words, request.max_tokens)
            text = _lorem(words, seed=len(last_user))
        reasoning = opts["reasoning"]
        reasoning_text = _REASONING if reasoning is True else (reasoning or "")

        first, gap = opts["first_token_delay"], opts["token_interval"]
        chunks: list[tuple[float, bytes]] = []

        def line(obj: dict[str, Any]) -> None:
            chunks.append((first if not chunks else gap, dumps(obj) + b"\n"))

        for piece in _pieces(reasoning_text):
            line({"r": piece})
        pieces = _pieces(text)
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
                "done": "stop",
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": len(pieces) + reasoning_tokens,
                    "reasoning_tokens": reasoning_tokens,
                },
            }
        )
        return LocalScript(tuple(chunks))

    def build_native_request(self, body: dict[str, Any]) -> LocalScript:
        from gateway.request import parse_request

        return self.build_request(parse_request(body))

    def new_translator(self) -> Translator:
        return _SimulatedTranslator()


_USAGE_KEYS = ("input_tokens", "output_tokens", "reasoning_tokens", "cached_input_tokens")


class _SimulatedTranslator(Translator):
    def feed(self, message: Message) -> list[Event]:
        try:
            obj = loads(message.data)
        except ValueError as exc:
            raise UpstreamProtocolError("simulated upstream sent invalid JSON") from exc
        if not isinstance(obj, dict):  # found by fuzz/fuzz_pipeline.py
            raise UpstreamProtocolError("simulated upstream sent a non-object line")
        if isinstance(obj.get("t"), str):
            return [ev.delta(obj["t"])]
        if isinstance(obj.get("r"), str):
            return [ev.reasoning(obj["r"])]
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
            return [ev.usage(**counts), ev.end("stop", str(obj["done"]))]
        return []
