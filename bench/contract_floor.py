"""The contract floor: the floor proxy plus what the contract makes every conforming gateway do.

``bench/floor.py`` bounds what a translating proxy costs in CPython with nothing but the
translation. Issue 17's question is whether the per-request target (3x nginx) is reachable by a
gateway that keeps its contract, so this module adds to the floor, per request and in the
cheapest way this machine's Python has, only what ``docs/contract.md`` requires of every stream
on a plain route (no auth, limits, pools, resume, accounting or tracing configured):

* the request's checks (section 3): method and path, ``Content-Type: application/json``, the
  body size cap, the body's JSON and its ``messages`` shape (roles, string contents), each with
  its JSON error and status;
* the response head of section 5 (``X-Request-Id``, ``X-Token-Protocol`` ...), sent when the
  upstream answered 2xx; a non-2xx answer becomes a 502 JSON error;
* the token protocol of section 5: ``created`` (id, route, provider, model), ``thinking`` when
  the upstream answered, ``clear`` before the first text, ``delta``, ``usage`` in the protocol's
  field names, and exactly one terminal event: ``end`` with the mapped reason after the
  upstream's ``[DONE]``, ``error{upstream_truncated}`` when the upstream ends without it;
* the timeouts of section 2 and the heartbeat of rule 4, as one timer per stream (re-armed
  lazily: a read only stores the time);
* a client abort closes the upstream (section 6);
* the core series of section 7 (prometheus_client, children bound once per route: requests,
  active streams, time to first token, inter-token gaps batched per stream, duration, events by
  type, tokens by kind);
* one log line per stream (nginx writes its access log in the same benchmark).

What a gateway does beyond this (the plan, failover, admission, the session's parts, the
trace and accounting hooks, the front doors' shared code) is the product's, not the contract's:
the gateway's CPU minus this floor's is what those cost.
"""

from __future__ import annotations

import asyncio
import sys
import time
from bisect import bisect_left
from typing import Any

import httptools
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bench import floor

ROLES = frozenset(("system", "developer", "user", "assistant", "tool"))
MAX_BODY = 1 << 20
HEARTBEAT = 15.0
FIRST_EVENT = 120.0
IDLE = 120.0
TOTAL = 1800.0
REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\n"
    b"X-Token-Protocol: 1\r\nTransfer-Encoding: chunked\r\nX-Request-Id: "
)
GAP_BOUNDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]


class RouteSeries:
    """The contract's core series for one route, children bound once."""

    def __init__(self, registry: CollectorRegistry, route: str) -> None:
        self.registry = registry

        def counter(name: str, labels: list[str]) -> Counter:
            return Counter(name, name, ["route", *labels], registry=registry)

        def histogram(name: str, labels: list[str], buckets: list[float]) -> Histogram:
            return Histogram(name, name, ["route", *labels], buckets=buckets, registry=registry)

        requests = counter("gateway_requests", ["outcome"])
        self.completed = requests.labels(route, "completed")
        self.failed = requests.labels(route, "upstream_error")
        self.active = Gauge("gateway_active_streams", "", ["route"], registry=registry).labels(
            route
        )
        self.ttft = histogram("gateway_time_to_first_token_seconds", [], GAP_BOUNDS).labels(route)
        self.gaps = histogram("gateway_inter_token_seconds", [], GAP_BOUNDS).labels(route)
        duration = histogram("gateway_stream_duration_seconds", ["outcome"], GAP_BOUNDS)
        self.duration = duration.labels(route, "completed")
        events = counter("gateway_events", ["type"])
        self.events = {
            name: events.labels(route, name)
            for name in ("created", "thinking", "clear", "delta", "usage", "end", "error")
        }
        tokens = counter("gateway_tokens", ["kind"])
        self.tokens = {kind: tokens.labels(route, kind) for kind in ("input", "output")}
        self.aborts = counter("gateway_client_aborts", ["phase"]).labels(route, "mid_stream")


def error_response(status: bytes, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
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

    def refuse(self, status: bytes, code: str, message: str) -> None:
        self.body.clear()
        if self.transport is not None:
            self.transport.write(error_response(status, code, message))
            self.transport.close()

    def on_message_complete(self) -> None:
        if self.parser.get_method() != b"POST" or self.url != b"/v1/stream/chat":
            return self.refuse(b"404 Not Found", "not_found", "no such route")
        if not self.content_type.startswith(b"application/json"):
            return self.refuse(b"415 Unsupported Media Type", "unsupported_media_type", "json")
        if self.size > MAX_BODY:
            return self.refuse(b"413 Payload Too Large", "body_too_large", "body too large")
        try:
            request = orjson.loads(b"".join(self.body))
        except orjson.JSONDecodeError:
            return self.refuse(b"400 Bad Request", "invalid_json", "body is not JSON")
        problem = check(request)
        if problem:
            return self.refuse(b"400 Bad Request", "invalid_request", problem)
        self.size = 0
        self.body.clear()
        super().start(request["messages"])

    def connection_lost(self, exc: Exception | None) -> None:
        upstream = self.upstream
        if upstream is not None and upstream.client is self:
            upstream.client = None
            self.server.series.aborts.inc()
            if upstream.transport is not None:
                upstream.transport.abort()
        self.transport = None


def check(request: Any) -> str | None:
    """The request shape of contract section 3: the field that is wrong, or ``None``."""
    messages = request.get("messages") if isinstance(request, dict) else None
    if not isinstance(messages, list) or not messages:
        return "messages: required, a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages[{i}].role: unknown role"
        if not isinstance(message.get("content"), str) and not message.get("tool_calls"):
            return f"messages[{i}].content: must be a string"
    return None


class ContractUpstream(floor.Upstream):
    """The pooled upstream connection, with the contract's stream rules (module docs)."""

    def __init__(self, server: ContractServer) -> None:
        super().__init__(server)
        self.server: ContractServer = server
        self.client: ContractClient | None = None
        self.reset()

    def reset(self) -> None:
        self.done = False
        self.headed = False
        self.texted = False
        self.t0 = self.last_read = self.last_content = 0.0
        self.counts: dict[str, int] = {}
        self.gaps: list[int] | None = None
        self.gap_sum = 0.0
        self.usage: dict[str, int] = {}
        self.reason = "stop"
        self.timer: Any = None

    def begin(self, client: floor.Client) -> None:
        assert isinstance(client, ContractClient)
        self.client = client
        client.upstream = self
        loop = self.server.loop
        self.t0 = self.last_read = loop.time()
        self.timer = loop.call_at(self.t0 + HEARTBEAT, self.tick)
        self.server.series.active.inc()

    def tick(self) -> None:
        """The one timer: a heartbeat after silence, or the stream's timeouts."""
        client = self.client
        if client is None:
            return
        now = self.server.loop.time()
        silent = now - self.last_read
        limit = FIRST_EVENT if self.last_read == self.t0 else IDLE
        if silent >= limit or now - self.t0 >= TOTAL:
            self.fail("upstream_timeout", "the upstream went silent", b"504 Gateway Timeout")
            return
        if silent >= HEARTBEAT:  # before the upstream answered, the head goes out with it
            client.write(self.head() + b": ping\n\n" if not self.headed else b": ping\n\n")
        self.timer = self.server.loop.call_at(now + HEARTBEAT, self.tick)

    def emit(self, name: bytes, doc: dict[str, Any]) -> bytes:
        assert self.client is not None
        kind = name.decode()
        self.counts[kind] = self.counts.get(kind, 0) + 1
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
        if self.parser.get_status_code() >= 300:
            self.fail("upstream_error", "the upstream refused", b"502 Bad Gateway")
            return
        head = b"" if self.headed else self.head()
        client.write(self.emit(b"thinking", {}), head)

    def on_body(self, body: bytes) -> None:
        client = self.client
        if client is None:
            return
        now = self.last_read = self.server.loop.time()
        buf = self.pending + body if self.pending else body
        *events, self.pending = buf.split(b"\n\n")
        out = []
        content = False
        for event in events:
            data = event[6:]  # b"data: "
            if data == b"[DONE]":
                self.done = True
                continue
            doc = orjson.loads(data)
            usage = doc.get("usage")
            if usage:
                self.usage = {
                    "input_tokens": usage.get("prompt_tokens", 0),
                    "output_tokens": usage.get("completion_tokens", 0),
                }
                out.append(self.emit(b"usage", self.usage))
            for choice in doc["choices"]:
                text = choice["delta"].get("content")
                if text:
                    if not self.texted:
                        self.texted = True
                        out.append(self.emit(b"clear", {}))
                    out.append(self.emit(b"delta", {"text": text}))
                    content = True
                reason = choice.get("finish_reason")
                if reason:
                    self.reason = REASONS.get(reason, "other")
        if out:
            if content:
                self.wrote_content(now)
            client.write(b"".join(out))

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

    def on_message_complete(self) -> None:
        if self.client is None:
            return
        if self.done:
            self.finish(self.emit(b"end", {"reason": self.reason}), failed=False)
        else:
            self.fail("upstream_truncated", "the upstream ended early")
        self.parser = httptools.HttpResponseParser(self)
        self.reset()
        self.server.idle.append(self)

    def fail(self, code: str, message: str, status: bytes = b"502 Bad Gateway") -> None:
        """End the stream with ``code``: an ``error`` event once the head went out, before it
        a JSON error with ``status`` (contract section 5, rule 6)."""
        if self.headed:
            frame = self.emit(b"error", {"code": code, "message": message, "retryable": True})
            self.finish(frame, failed=True)
        else:
            self.finish(None, failed=True, refusal=(status, code, message))
        if self.transport is not None and not self.done:
            self.transport.close()

    def finish(
        self, frame: bytes | None, *, failed: bool, refusal: tuple[bytes, str, str] | None = None
    ) -> None:
        client, self.client = self.client, None
        assert client is not None
        client.upstream = None
        if refusal is not None:
            client.refuse(*refusal)
        else:
            assert frame is not None
            client.finish(frame)
        self.timer.cancel()
        series = self.server.series
        now = self.server.loop.time()
        series.active.dec()
        (series.failed if failed else series.completed).inc()
        series.duration.observe(now - self.t0)
        for kind, n in self.counts.items():
            series.events[kind].inc(n)
        for kind, n in self.usage.items():
            series.tokens[kind[: -len("_tokens")]].inc(n)
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
            "outcome": "upstream_error" if failed else "completed",
            "duration_ms": round((now - self.t0) * 1000, 3),
            **self.usage,
        }
        sys.stderr.write(orjson.dumps(line).decode() + "\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.fail("upstream_truncated", "the upstream closed the connection")
        if self in self.server.idle:
            self.server.idle.remove(self)


class ContractServer(floor.FloorServer):
    """The listening side, the upstream pool and the route's series."""

    provider = "openai-chat"
    model = "bench"

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.loop = asyncio.get_running_loop()
        self.series = RouteSeries(CollectorRegistry(), "chat")

    def upstream(self) -> ContractUpstream:
        return ContractUpstream(self)

    def client(self) -> ContractClient:
        return ContractClient(self)
