"""What the tracing part writes into span attributes from request data, made safe. Pure.

* :func:`safe_url`: ``url.full`` without secrets: user info becomes ``REDACTED:REDACTED`` and
  every query value ``REDACTED`` (some APIs take keys or signatures in the query string), as the
  HTTP semantic conventions ask.
* :func:`input_messages` / :func:`output_messages`: the GenAI conventions' JSON shapes for
  ``gen_ai.input.messages`` and ``gen_ai.output.messages`` (``[{"role", "parts": [{"type":
  "text", "content"}]}]``), written only when ``capture_content`` is on. Each text part is cut at
  :data:`MAX_PART_CHARS` so one huge prompt cannot make a span the collector refuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MAX_PART_CHARS", "input_messages", "output_messages", "safe_url", "server_of"]

MAX_PART_CHARS = 32 * 1024
TRUNCATED = "…[truncated]"


def safe_url(url: str) -> str:
    """``url`` with credentials and query values replaced by ``REDACTED``; fragment dropped.

    A URL that cannot be parsed gives ``""`` rather than risking a secret in a span.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"REDACTED:REDACTED@{netloc}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "REDACTED") for k, _ in pairs], safe="")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def server_of(url: str) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port`` of ``url`` (the scheme's default port if none)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None, None
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.hostname, port


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PART_CHARS else text[:MAX_PART_CHARS] + TRUNCATED


def _parts(content: Any) -> list[dict[str, str]]:
    if isinstance(content, str):
        return [{"type": "text", "content": _cut(content)}]
    parts: list[dict[str, str]] = []
    if isinstance(content, list):
        for item in content:
            if isinstance(item, str):
                parts.append({"type": "text", "content": _cut(item)})
            elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
                parts.append({"type": "text", "content": _cut(item["text"])})
    return parts


def input_messages(messages: Iterable[Mapping[str, Any]]) -> str:
    """The chat history as the JSON string of ``gen_ai.input.messages`` (text parts only)."""
    out = [
        {"role": str(m.get("role", "user")), "parts": _parts(m.get("content"))}
        for m in messages
        if isinstance(m, Mapping)
    ]
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def output_messages(text: str, finish_reasons: Sequence[str]) -> str:
    """The answer as the JSON string of ``gen_ai.output.messages``: one assistant message."""
    message: dict[str, Any] = {"role": "assistant", "parts": _parts(text)}
    message["finish_reason"] = finish_reasons[0] if finish_reasons else "unknown"
    return json.dumps([message], ensure_ascii=False, separators=(",", ":"))
