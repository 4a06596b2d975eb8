"""What the tracing part writes into span attributes from request data, made safe. Pure.

* :func:`safe_url`: ``url.full`` without secrets: user info becomes ``REDACTED:REDACTED`` and
  every query value ``REDACTED`` (some APIs take keys or signatures in the query string), as the
  HTTP semantic conventions ask.
* :func:`input_messages` / :func:`output_messages`: the GenAI conventions' JSON shapes for
  ``gen_ai.input.messages`` and ``gen_ai.output.messages`` (``[{"role", "parts": [{"type":
  "text", "content"}]}]``), written only when ``capture_content`` is on. Each text part is cut at
  :data:`MAX_PART_CHARS` so one huge prompt cannot make a span the collector refuses.
* :func:`trace_headers`, :func:`parse_traceparent`, :func:`parse_tracestate`: a client's W3C
  Trace Context, read by the rules of W3C Trace Context level 1 (a ``traceparent`` sent twice
  is none; several ``tracestate`` headers are one list) without a log line: a hostile header
  must cost neither a warning per request nor a place in one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "MAX_PART_CHARS",
    "input_messages",
    "output_messages",
    "parse_traceparent",
    "parse_tracestate",
    "safe_url",
    "server_of",
    "trace_headers",
]

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


_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_TRACEPARENT_LENGTH = 55
_KEY = r"[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13}"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(rf"[ \t]*({_KEY})=({_VALUE})[ \t]*")
MAX_TRACESTATE_CHARS = 512
MAX_TRACESTATE_MEMBERS = 32


def trace_headers(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The client's ``traceparent`` and ``tracestate`` as W3C Trace Context reads them.

    ``headers``: a case-insensitive multi-mapping (``getall``, as the servers' request headers)
    or a plain mapping with lower-case keys. A ``traceparent`` sent more than once is none (the
    trace restarts); several ``tracestate`` headers are one list, joined with commas.
    """
    traceparent = headers.get("traceparent")
    if traceparent is None:
        return None, None
    getall = getattr(headers, "getall", None)
    if getall is None:
        return traceparent, headers.get("tracestate")
    if len(getall("traceparent")) > 1:
        return None, None
    states: list[str] = getall("tracestate", [])
    return traceparent, ",".join(states) if states else None


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """Trace id, parent id and flags of a ``traceparent``, or None when W3C Trace Context level 1
    says to ignore it: not lower-case hex, version ``ff``, an all-zero id, version ``00`` with
    anything after the flags, a later version whose next field does not start with ``-``."""
    value = value.strip(" \t")  # optional white space around a header value
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace, parent, flags = match.groups()
    if version == "ff":
        return None
    if len(value) != _TRACEPARENT_LENGTH and (version == "00" or value[_TRACEPARENT_LENGTH] != "-"):
        return None
    trace_id, span_id = int(trace, 16), int(parent, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(flags, 16)


def parse_tracestate(value: str) -> list[tuple[str, str]] | None:
    """The ``tracestate`` list members (key, value), or None when the header is to be dropped:
    over 512 characters or 32 members, a member that is not ``key=value`` by the W3C grammar,
    a key given twice. Empty members are skipped."""
    if len(value) > MAX_TRACESTATE_CHARS:
        return None
    pairs: list[tuple[str, str]] = []
    keys: set[str] = set()
    for member in value.split(","):
        if not member.strip(" \t"):
            continue
        match = _MEMBER.fullmatch(member)
        if match is None or match[1] in keys:
            return None
        keys.add(match[1])
        pairs.append((match[1], match[2]))
    return pairs if len(pairs) <= MAX_TRACESTATE_MEMBERS else None
