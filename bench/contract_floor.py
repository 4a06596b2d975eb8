"""The contract floor: the floor proxy plus what the contract makes every conforming gateway do.

``bench/floor.py`` bounds what a translating proxy costs in CPython with nothing but the
translation. Issue 17's question is whether the per-request target (3x nginx) is reachable by a
gateway that keeps its contract, so this module adds to the floor, per request and in the
cheapest way this machine's Python has, only what ``docs/contract.md`` requires of every stream
on a plain ``openai-chat`` route with the token protocol out (no auth, limits, pools, resume,
accounting or tracing configured):

* the request's checks (section 3): the route's path (404), ``POST`` (405 with ``Allow``),
  ``Content-Type: application/json`` (415), the body size cap (413), the body's JSON (400
  ``invalid_json``) and its shape (400 ``invalid_request`` naming the field: ``messages``,
  roles, string contents, tool calls only on assistant messages, ``tool_call_id`` on tool
  results, and the optional fields when present), each with its JSON error;
* the upstream request of the adapter: the messages forwarded (assistant tool calls in the Chat
  shape), the optional fields translated (``reasoning.effort``, tools; ``metadata`` never);
* the response head of section 5 (``X-Request-Id``, ``X-Token-Protocol`` ...), sent when the
  upstream answered 2xx or when the first heartbeat is due; before it, a failure is a JSON
  error: 502 ``upstream_error`` for a non-2xx answer, 429 ``rate_limited`` (with
  ``Retry-After``) for an upstream 429, 502 ``upstream_connect``, 504 ``upstream_timeout``;
* the token protocol of section 5 from any SSE framing (LF or CRLF, comments, other fields):
  ``created`` (id, route, provider, model), ``thinking`` when the upstream answered,
  ``reasoning``, ``clear`` before the first visible output, ``delta`` (refusals too),
  ``tool_call`` (id and name on an index's first piece), ``usage`` in the protocol's field
  names (the fields the upstream reported), and exactly one terminal event: ``end`` with the
  mapped reason after the upstream's ``[DONE]``; ``error`` with ``upstream_error`` (an error
  in the stream), ``upstream_protocol`` (malformed data), ``upstream_truncated`` (ended
  without ``[DONE]``) or ``upstream_timeout``;
* the timeouts of section 2 and the heartbeat of rule 4, as one timer per stream, armed for the
  earliest of the next heartbeat and the limits (a read only stores the time);
* a client abort closes the upstream (section 6) and ends the stream's record;
* the core series of section 7 (prometheus_client, children bound once per route: requests by
  outcome, active streams, time to first token, inter-token gaps batched per stream, duration
  by outcome, events by type, tokens by kind, client aborts by phase, upstream cancel time);
* one log line per stream (nginx writes its access log in the same benchmark).

What a gateway does beyond this (the plan, failover, admission, the session's parts, the
trace and accounting hooks, the front doors' shared code) is the product's, not the contract's:
the gateway's CPU minus this floor's is what those cost.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from bisect import bisect_left
from typing import Any

import httptools
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bench import floor

ROUTE_PATH = b"/v1/stream/chat"
ROLES = frozenset(("system", "developer", "user", "assistant", "tool"))
EFFORTS = frozenset(("low", "medium", "high"))
MAX_BODY = 1 << 20
HEARTBEAT = 15.0
CONNECT = 10.0
FIRST_EVENT = 120.0
IDLE = 120.0
TOTAL = 1800.0
EARLY = 0.002
"""How much earlier than its due time the loop may run a timer (libuv's are whole ms)."""
REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
OUTCOMES = {
    "upstream_timeout": "upstream_timeout",
    "upstream_truncated": "upstream_truncated",
    "upstream_error": "upstream_error",
    "upstream_protocol": "upstream_error",
    "upstream_connect": "upstream_error",
    "rate_limited": "upstream_error",
    "client_abort": "client_abort",
}
"""The outcome label of a stream that ended with an error code (or was aborted)."""
INCLUDE_USAGE = {"include_usage": True}
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\n"
    b"X-Token-Protocol: 1\r\nTransfer-Encoding: chunked\r\nX-Request-Id: "
)
GAP_BOUNDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
PLAIN = frozenset(("role", "content"))
"""A ``delta`` with only these fields carries text and nothing else to translate."""
EVENT_TYPES = (b"created", b"thinking", b"reasoning", b"clear", b"delta", b"tool_call", b"usage")
TOKEN_KINDS = {
    "input_tokens": "input",
    "output_tokens": "output",
    "reasoning_tokens": "reasoning",
    "cached_input_tokens": "cached_input",
}


class RouteSeries:
    """The contract's core series for one route, children bound once."""

    def __init__(self, registry: CollectorRegistry, route: str) -> None:
        self.registry = registry

        def counter(name: str, labels: list[str]) -> Counter:
            return Counter(name, name, ["route", *labels], registry=registry)

        def histogram(name: str, labels: list[str], buckets: list[float]) -> Histogram:
            return Histogram(name, name, ["route", *labels], buckets=buckets, registry=registry)

        outcomes = ("completed", *sorted(set(OUTCOMES.values())))
        requests = counter("gateway_requests", ["outcome"])
        self.requests = {outcome: requests.labels(route, outcome) for outcome in outcomes}
        self.active = Gauge("gateway_active_streams", "", ["route"], registry=registry).labels(
            route
        )
        self.ttft = histogram("gateway_time_to_first_token_seconds", [], GAP_BOUNDS).labels(route)
        self.gaps = histogram("gateway_inter_token_seconds", [], GAP_BOUNDS).labels(route)
        duration = histogram("gateway_stream_duration_seconds", ["outcome"], GAP_BOUNDS)
        self.duration = {outcome: duration.labels(route, outcome) for outcome in outcomes}
        events = counter("gateway_events", ["type"])
        self.events = {
            name: events.labels(route, name.decode()) for name in (*EVENT_TYPES, b"end", b"error")
        }
        tokens = counter("gateway_tokens", ["kind"])
        self.tokens = {field: tokens.labels(route, kind) for field, kind in TOKEN_KINDS.items()}
        aborts = counter("gateway_client_aborts", ["phase"])
        self.aborts = {
            phase: aborts.labels(route, phase)
            for phase in ("before_upstream_headers", "before_first_token", "mid_stream")
        }
        self.cancel = histogram("gateway_upstream_cancel_seconds", [], GAP_BOUNDS).labels(route)


def error_response(status: bytes, code: str, message: str, extra: bytes = b"") -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status,
        extra,
        len(body),
        body,
    )


class ContractClient(floor.Client):
    """One client connection of the contract floor (see the module docs)."""

    def __init__(self, server: ContractServer) -> None:
        super().__init__(server)
        self.server: ContractServer = server
        self.url = b""
        self.content_type = b""
        self.size = 0
        self.received = 0.0
        self.upstream: ContractUpstream | None = None

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= MAX_BODY:
            self.body.append(body)

    def refuse(self, status: bytes, code: str, message: str, extra: bytes = b"") -> None:
        self.body.clear()
        if self.transport is not None:
            self.transport.write(error_response(status, code, message, extra))
            self.transport.close()

    def on_message_complete(self) -> None:
        if self.url != ROUTE_PATH:
            return self.refuse(b"404 Not Found", "not_found", "no such route")
        if self.parser.get_method() != b"POST":
            return self.refuse(
                b"405 Method Not Allowed", "method_not_allowed", "POST only", b"Allow: POST\r\n"
            )
        media = self.content_type
        if media != b"application/json" and not json_media_type(media):
            return self.refuse(b"415 Unsupported Media Type", "unsupported_media_type", "json")
        if self.size > MAX_BODY:
            return self.refuse(b"413 Payload Too Large", "body_too_large", "body too large")
        try:
            request = orjson.loads(b"".join(self.body))
        except orjson.JSONDecodeError:
            return self.refuse(b"400 Bad Request", "invalid_json", "body is not JSON")
        messages = check(request)
        if messages.__class__ is str:
            return self.refuse(b"400 Bad Request", "invalid_request", messages)
        upstream = {"model": "bench", "messages": messages, "stream": True}
        if len(request) > 1:  # any field beside ``messages``: checked and translated
            problem = options(request, upstream)
            if problem:
                return self.refuse(b"400 Bad Request", "invalid_request", problem)
        upstream["stream_options"] = INCLUDE_USAGE
        self.received = self.server.loop.time()
        self.size = 0
        self.body.clear()
        self.n = 0
        self.rid = os.urandom(8).hex()
        body = orjson.dumps(upstream)
        self.server.send_upstream(
            self,
            b"POST %s HTTP/1.1\r\nHost: upstream\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer sk-bench\r\nContent-Length: %d\r\n\r\n%s"
            % (floor.UPSTREAM_PATH, len(body), body),
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        upstream = self.upstream
        if upstream is not None and upstream.client is self:
            upstream.aborted()


def json_media_type(value: bytes) -> bool:
    """``Content-Type`` is ``application/json``, any case, parameters (charset) allowed."""
    return value.split(b";", 1)[0].strip().lower() == b"application/json"


def check(request: Any) -> Any:
    """The messages of contract section 3 as the upstream takes them, or the problem naming
    the field (a ``str``)."""
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list) or not messages:
        return "messages: required, a non-empty list"
    tooled = False
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}]: must be an object"
        role = message.get("role")
        if role not in ROLES:
            return f"messages[{i}].role: unknown role"
        if len(message) == 2 and message.get("content").__class__ is str and role != "tool":
            continue  # the common message: role and text, forwarded as it is
        problem = check_message(message, f"messages[{i}]")
        if problem:
            return problem
        tooled = tooled or bool(message.get("tool_calls"))
    return [chat_message(m) for m in messages] if tooled else messages


def check_message(message: dict[str, Any], path: str) -> str | None:
    """A message beyond role and text: tool calls (assistant only), ``tool_call_id`` (tool
    results only), content a string unless an assistant message carries tool calls."""
    calls = message.get("tool_calls")
    if calls is not None:
        if message["role"] != "assistant":
            return f"{path}.tool_calls: only assistant messages carry tool calls"
        if not isinstance(calls, list) or not all(
            isinstance(c, dict)
            and isinstance(c.get("id"), str)
            and isinstance(c.get("name"), str)
            and isinstance(c.get("arguments", ""), str | dict)
            for c in calls
        ):
            return f"{path}.tool_calls: a list of {{id, name, arguments}}"
    if not isinstance(message.get("content"), str) and not calls:
        return f"{path}.content: must be a string"
    call_id = message.get("tool_call_id")
    if (message["role"] == "tool") != isinstance(call_id, str):
        return f"{path}.tool_call_id: required on tool messages, only there"
    return None


def chat_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message in the upstream's shape (assistant tool calls as functions)."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    return {
        "role": "assistant",
        "content": message.get("content") or None,
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": arguments(c.get("arguments", ""))},
            }
            for c in calls
        ],
    }


def arguments(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def options(request: dict[str, Any], upstream: dict[str, Any]) -> str | None:
    """The optional fields of contract section 3, checked and put into ``upstream``; the
    problem naming the field, or ``None``. ``model`` is checked, not used (the route does not
    allow an override); ``metadata`` is checked, never forwarded."""
    get = request.get
    value = get("model")
    if value is not None and not (isinstance(value, str) and value):
        return "model: must be a non-empty string"
    value = get("max_tokens")
    if value is not None:
        if not (number(value) and isinstance(value, int) and value > 0):
            return "max_tokens: must be a positive integer"
        upstream["max_tokens"] = value
    for key, high in (("temperature", 2), ("top_p", 1)):
        value = get(key)
        if value is not None:
            if not (number(value) and 0 <= value <= high):
                return f"{key}: must be a number from 0 to {high}"
            upstream[key] = value
    value = get("stop")
    if value is not None:
        if not (
            isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(s, str) for s in value))
        ):
            return "stop: must be a string or a list of strings"
        upstream["stop"] = value
    value = get("tools")
    if value is not None:
        problem = tools(value, upstream)
        if problem:
            return problem
    value = get("reasoning")
    if value is not None:
        if not isinstance(value, dict) or value.get("effort", "low") not in EFFORTS:
            return "reasoning.effort: must be low, medium or high"
        if "effort" in value:
            upstream["reasoning_effort"] = value["effort"]
    value = get("metadata")
    if value is not None and not isinstance(value, dict):
        return "metadata: must be an object"
    return None


def tools(value: Any, upstream: dict[str, Any]) -> str | None:
    """``tools``: each a function with a name, put into ``upstream`` in the Chat shape."""
    if not isinstance(value, list):
        return "tools: must be a list"
    out = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            return f"tools[{i}].name: must be a non-empty string"
        parameters = tool.get("parameters", {})
        if not isinstance(parameters, dict):
            return f"tools[{i}].parameters: must be an object"
        function = {"name": tool["name"], "parameters": parameters}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    if out:
        upstream["tools"] = out
    return None


def sse_data(event: bytes) -> bytes | None:
    """The data of one SSE message that is not a single ``data: `` line: its data lines
    joined, comments and other fields skipped; ``None`` when it has no data."""
    data = []
    for line in event.split(b"\n"):
        field, _, value = line.partition(b":")
        if field == b"data":
            data.append(value[1:] if value[:1] == b" " else value)
    return b"\n".join(data) if data else None


def usage_fields(usage: dict[str, Any]) -> dict[str, int]:
    """Chat usage in the protocol's names: only the counts the upstream reported."""
    out = {}
    for field, name in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens")):
        n = usage.get(field)
        if n.__class__ is int:
            out[name] = n
    details = usage.get("completion_tokens_details")
    if details:
        n = details.get("reasoning_tokens")
        if n.__class__ is int:
            out["reasoning_tokens"] = n
    details = usage.get("prompt_tokens_details")
    if details:
        n = details.get("cached_tokens")
        if n.__class__ is int:
            out["cached_input_tokens"] = n
    return out


def error_message(err: Any) -> str:
    if isinstance(err, dict):
        return str(err.get("message") or "the upstream reported an error")
    return str(err)


class ContractUpstream(floor.Upstream):
    """The pooled upstream connection, with the contract's stream rules (module docs)."""

    def __init__(self, server: ContractServer) -> None:
        super().__init__(server)
        self.server: ContractServer = server
        self.client: ContractClient | None = None
        self.abort_at = 0.0
        self.reset()

    def reset(self) -> None:
        self.done = False
        self.answered = False
        self.headed = False
        self.texted = False
        self.refused = False
        self.t0 = self.last_read = self.last_content = self.beat = 0.0
        self.counts: dict[bytes, int] = {}
        self.gaps: list[int] | None = None
        self.gap_sum = 0.0
        self.usage: dict[str, int] = {}
        self.reason: str | None = None
        self.calls: set[int] | None = None
        self.timer: Any = None

    def begin(self, client: floor.Client) -> None:
        assert isinstance(client, ContractClient)
        self.client = client
        client.upstream = self
        self.t0 = self.last_read = client.received
        self.timer = self.server.loop.call_at(self.t0 + self.server.heartbeat, self.tick)
        self.server.series.active.inc()

    def tick(self) -> None:
        """The one timer: a heartbeat after silence, or the stream's timeouts; re-armed for
        whichever of them is due first."""
        client = self.client
        if client is None:
            return
        server = self.server
        now = server.loop.time() + EARLY
        limit = server.first_event if self.last_read == self.t0 else server.idle_timeout
        if now - self.last_read >= limit or now - self.t0 >= server.total:
            self.fail("upstream_timeout", "the upstream went silent", b"504 Gateway Timeout")
            return
        quiet = max(self.last_read, self.beat)
        if now - quiet >= server.heartbeat:  # before the answer, the head goes out with it
            client.write(b": ping\n\n", b"" if self.headed else self.head())
            quiet = self.beat = now - EARLY
        due = min(quiet + server.heartbeat, self.last_read + limit, self.t0 + server.total)
        self.timer = server.loop.call_at(due, self.tick)

    def emit(self, name: bytes, doc: dict[str, Any]) -> bytes:
        assert self.client is not None
        self.counts[name] = self.counts.get(name, 0) + 1
        return self.client.event(name, doc)

    def head(self) -> bytes:
        """The response head and ``created`` (once: at the answer or the first heartbeat)."""
        client = self.client
        assert client is not None
        self.headed = True
        route = self.server
        created = self.emit(
            b"created",
            {"id": client.rid, "route": "chat", "provider": route.provider, "model": route.model},
        )
        return HEAD + client.rid.encode() + b"\r\n\r\n" + b"%x\r\n%b\r\n" % (len(created), created)

    def on_headers_complete(self) -> None:
        client = self.client
        assert client is not None
        status = self.parser.get_status_code()
        if status >= 300:
            if status == 429 and not self.headed:
                return self.fail(
                    "rate_limited", "the upstream is rate limited", b"429 Too Many Requests"
                )
            return self.fail("upstream_error", f"the upstream answered {status}")
        self.answered = True
        head = b"" if self.headed else self.head()
        client.write(self.emit(b"thinking", {}), head)

    def on_body(self, body: bytes) -> None:
        client = self.client
        if client is None:
            return
        now = self.last_read = self.server.loop.time()
        buf = self.pending + body if self.pending else body
        tail = b""
        # ``find``, not ``in``: ``bytes in bytes`` first tries its operand as an integer and
        # raises and clears a TypeError (about 1,800 instructions each).
        if buf.find(b"\r") >= 0:  # CRLF or CR line ends; a CR at the end may start a CRLF
            if buf[-1:] == b"\r":
                buf, tail = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *events, pending = buf.split(b"\n\n")
        self.pending = pending + tail if tail else pending
        out: list[bytes] = []
        content = False
        failure: tuple[str, str] | None = None
        for event in events:
            if event[:6] == b"data: " and event.find(b"\n") < 0:
                data = event[6:]
            else:
                found = sse_data(event)
                if found is None:
                    continue
                data = found
            if data == b"[DONE]":
                self.done = True
                continue
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                doc = None
            if doc.__class__ is not dict:
                failure = ("upstream_protocol", "the upstream sent malformed data")
                break
            err = doc.get("error")
            if err:
                failure = ("upstream_error", error_message(err))
                break
            usage = doc.get("usage")
            if usage:
                self.usage = usage_fields(usage)
                out.append(self.emit(b"usage", self.usage))
            choices = doc.get("choices")
            if not choices:
                continue
            choice = choices[0]
            delta = choice.get("delta")
            if not delta:
                pass
            elif delta.keys() <= PLAIN:  # text only (the common chunk): no other field to read
                text = delta.get("content")
                if text:
                    if not self.texted:
                        self.texted = True
                        out.append(self.emit(b"clear", {}))
                    out.append(self.emit(b"delta", {"text": text}))
                    content = True
            else:
                content = self.translate(delta, out) or content
            reason = choice.get("finish_reason")
            if reason:
                if reason == "error":
                    failure = ("upstream_error", "the upstream reported an error")
                    break
                self.reason = reason
        if out:
            if content:
                self.wrote_content(now)
            client.write(b"".join(out))
        if failure:
            self.fail(*failure)

    def translate(self, delta: dict[str, Any], out: list[bytes]) -> bool:
        """One chunk's ``delta`` as token events into ``out``; whether any is content."""
        content = False
        text = delta.get("reasoning") or delta.get("reasoning_content")
        if text:
            out.append(self.emit(b"reasoning", {"text": text}))
            content = True
        text = delta.get("content")
        refusal = delta.get("refusal")
        if refusal:
            self.refused = True
            text = text + refusal if text else refusal
        if text:
            if not self.texted:
                self.texted = True
                out.append(self.emit(b"clear", {}))
            out.append(self.emit(b"delta", {"text": text}))
            content = True
        calls = delta.get("tool_calls")
        if calls:
            if not self.texted:
                self.texted = True
                out.append(self.emit(b"clear", {}))
            for call in calls:
                out.append(self.emit(b"tool_call", self.tool_piece(call)))
            content = True
        return content

    def tool_piece(self, call: dict[str, Any]) -> dict[str, Any]:
        """A ``tool_call`` event's data: ``id`` and ``name`` on an index's first piece."""
        index = call.get("index", 0)
        function = call.get("function") or {}
        piece = {"index": index, "arguments": arguments(function.get("arguments") or "")}
        seen = self.calls if self.calls is not None else set()
        self.calls = seen
        if index not in seen:
            seen.add(index)
            piece["id"] = call.get("id") or "call_" + os.urandom(12).hex()
            piece["name"] = function.get("name") or ""
        return piece

    def wrote_content(self, now: float) -> None:
        if not self.last_content:
            self.server.series.ttft.observe(now - self.t0)
        else:
            gap = now - self.last_content
            gaps = self.gaps or self.new_gaps()
            gaps[bisect_left(GAP_BOUNDS, gap)] += 1
            self.gap_sum += gap
        self.last_content = now

    def new_gaps(self) -> list[int]:
        self.gaps = [0] * (len(GAP_BOUNDS) + 1)
        return self.gaps

    def end_reason(self) -> str:
        reason = self.reason
        if reason is None:
            return "tool_calls" if self.calls else "other"
        mapped = REASONS.get(reason, "other")
        if self.calls and mapped == "stop":
            return "tool_calls"
        if self.refused and mapped == "stop":
            return "content_filter"
        return mapped

    def on_message_complete(self) -> None:
        if self.client is None:
            return
        if self.done:
            self.finish(self.emit(b"end", {"reason": self.end_reason()}), "completed")
        else:
            self.fail("upstream_truncated", "the upstream ended early")
            return
        self.parser = httptools.HttpResponseParser(self)
        self.reset()
        self.server.idle.append(self)

    def fail(self, code: str, message: str, status: bytes = b"502 Bad Gateway") -> None:
        """End the stream with ``code``: an ``error`` event once the head went out, before it
        a JSON error with ``status`` (contract section 5, rule 6). The upstream connection
        is closed, never pooled again."""
        outcome = OUTCOMES[code]
        if self.headed:
            retryable = code != "upstream_protocol"
            frame = self.emit(b"error", {"code": code, "message": message, "retryable": retryable})
            self.finish(frame, outcome)
        else:
            extra = b"Retry-After: 1\r\n" if code == "rate_limited" else b""
            self.finish(None, outcome, (status, code, message, extra))
        if self.transport is not None:
            self.transport.close()

    def aborted(self) -> None:
        """The client went away: count it by phase, end the record, close the upstream."""
        series = self.server.series
        if not self.answered:
            phase = "before_upstream_headers"
        elif not self.last_content:
            phase = "before_first_token"
        else:
            phase = "mid_stream"
        series.aborts[phase].inc()
        self.abort_at = self.server.loop.time()
        self.finish(None, "client_abort")
        if self.transport is not None:
            self.transport.abort()

    def finish(
        self,
        frame: bytes | None,
        outcome: str,
        refusal: tuple[bytes, str, str, bytes] | None = None,
    ) -> None:
        client, self.client = self.client, None
        assert client is not None
        client.upstream = None
        if refusal is not None:
            client.refuse(*refusal)
        elif frame is not None:
            client.finish(frame)
        self.timer.cancel()
        series = self.server.series
        now = self.server.loop.time()
        series.active.dec()
        series.requests[outcome].inc()
        series.duration[outcome].observe(now - self.t0)
        for kind, n in self.counts.items():
            series.events[kind].inc(n)
        for field, n in self.usage.items():
            series.tokens[field].inc(n)
        if self.gaps is not None:
            for i, n in enumerate(self.gaps):
                if n:
                    series.gaps._buckets[i].inc(n)
            series.gaps._sum.inc(self.gap_sum)
        line = {
            "ts": round(time.time(), 3),
            "event": "stream",
            "route": "chat",
            "id": client.rid,
            "outcome": outcome,
            "duration_ms": round((now - self.t0) * 1000, 3),
            **self.usage,
        }
        sys.stderr.write(orjson.dumps(line).decode() + "\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.fail("upstream_truncated", "the upstream closed the connection")
        elif self.abort_at:
            self.server.series.cancel.observe(self.server.loop.time() - self.abort_at)
        if self in self.server.idle:
            self.server.idle.remove(self)


class ContractServer(floor.FloorServer):
    """The listening side, the upstream pool and the route's series; the route's timeouts
    (contract section 2's defaults unless given)."""

    provider = "openai-chat"
    model = "bench"

    def __init__(
        self,
        upstream_port: int,
        *,
        heartbeat: float = HEARTBEAT,
        first_event: float = FIRST_EVENT,
        idle_timeout: float = IDLE,
        total: float = TOTAL,
    ) -> None:
        super().__init__(upstream_port)
        self.loop = asyncio.get_running_loop()
        self.series = RouteSeries(CollectorRegistry(), "chat")
        self.heartbeat = heartbeat
        self.first_event = first_event
        self.idle_timeout = idle_timeout
        self.total = total

    def upstream(self) -> ContractUpstream:
        return ContractUpstream(self)

    def client(self) -> ContractClient:
        return ContractClient(self)

    async def _connect(self, client: floor.Client, request: bytes) -> None:
        """A new upstream connection for ``client`` (none idle); a refusal or a ``connect``
        timeout ends the stream with a 502 ``upstream_connect``."""
        conn = self.upstream()
        conn.begin(client)
        try:
            async with asyncio.timeout(CONNECT):
                await self.loop.create_connection(lambda: conn, "127.0.0.1", self.upstream_port)
        except (OSError, TimeoutError):
            if conn.client is not None:
                conn.fail("upstream_connect", "the upstream refused the connection")
            return
        assert conn.transport is not None
        if conn.client is None:  # the client left while it connected
            conn.transport.abort()
            return
        conn.transport.write(request)
