"""A real OTLP/HTTP trace receiver on loopback: decodes ``ExportTraceServiceRequest`` bodies.

``POST /v1/traces`` with ``Content-Type: application/x-protobuf`` is parsed with the official
``opentelemetry-proto`` messages and each span is kept as a :class:`ReceivedSpan` (ids in hex,
attributes as plain Python values, events, status, the resource's attributes). The receiver
answers 200 with an empty ``ExportTraceServiceResponse``, as a collector does. It runs with
aiohttp's production runner on the test's event loop, so a test must never block the loop while
spans are exported (flush with ``await asyncio.to_thread(tracing.force_flush)``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def value_of(v: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a Python value (arrays as tuples)."""
    which = v.WhichOneof("value")
    if which == "array_value":
        return tuple(value_of(x) for x in v.array_value.values)
    if which == "kvlist_value":
        return attributes_of(v.kvlist_value.values)
    return None if which is None else getattr(v, which)


def attributes_of(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = value_of(kv.value)
    return out


@dataclass
class ReceivedEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass
class ReceivedSpan:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    trace_state: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status: str
    status_message: str
    events: list[ReceivedEvent]
    resource: dict[str, Any] = field(default_factory=dict)


class OTLPReceiver:
    """``await OTLPReceiver().start()``; ``url`` is the base endpoint (``http://127.0.0.1:N``)."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> OTLPReceiver:
        app = web.Application()
        app.router.add_post("/v1/traces", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedSpan]:
        """The spans once at least ``count`` arrived (``TimeoutError`` after ``timeout`` s)."""
        async with asyncio.timeout(timeout):
            while len(self.spans) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.spans

    def named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name == name]

    async def _handle(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415)
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.requests += 1
        for resource_spans in message.resource_spans:
            resource = attributes_of(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=s.name,
                            kind=KINDS.get(s.kind, str(s.kind)),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            trace_state=s.trace_state,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            attributes=attributes_of(s.attributes),
                            status=STATUS.get(s.status.code, str(s.status.code)),
                            status_message=s.status.message,
                            events=[
                                ReceivedEvent(e.name, e.time_unix_nano, attributes_of(e.attributes))
                                for e in s.events
                            ],
                            resource=resource,
                        )
                    )
        self._arrived.set()
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")
