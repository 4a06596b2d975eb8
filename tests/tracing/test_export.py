"""gateway/tracing/export.py: batching off the loop, the bounded queue and counted drops."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence

import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.config.model import TracingConfig
from gateway.metrics import TRACE_DROP_REASONS
from gateway.tracing import Tracing
from gateway.tracing.export import DropCountingProcessor, traces_url
from gateway.tracing.tracer import EXPORT_TIMEOUT, otlp_exporter
from tests.support.system import free_port
from tests.tracing.conftest import Drops


class GatedExporter(SpanExporter):
    """Blocks in ``export`` until released; records what it was given."""

    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[int] = []
        self.result = result

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append(len(spans))
        self.entered.set()
        self.release.wait(10)
        return self.result

    def shutdown(self) -> None:
        self.release.set()


class RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise OSError("collector exploded")


def end_spans(processor: DropCountingProcessor, n: int) -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for _ in range(n):
        tracer.start_span("s").end()


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/custom/traces", "https://otel.example/custom/traces"),
    ],
)
def test_traces_url(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


def test_metric_series_exist_at_zero(drops: Drops) -> None:
    assert [drops(reason) for reason in TRACE_DROP_REASONS] == [0.0, 0.0, 0.0]


def test_a_full_queue_drops_and_counts(drops: Drops, caplog: pytest.LogCaptureFixture) -> None:
    """Counted, not logged: the SDK's warning per dropped span would run on the event loop."""
    exporter = GatedExporter()
    processor = DropCountingProcessor(exporter, drops.metrics, max_queue_size=4, schedule_delay=60)
    end_spans(processor, 4)  # a full batch wakes the worker, which blocks in export
    assert exporter.entered.wait(5)
    assert processor.queued() == 0
    end_spans(processor, 10)  # 4 fit, the 6 oldest of them are pushed out
    assert processor.queued() == 4
    assert drops("queue_full") == 6
    assert [r.getMessage() for r in caplog.records if "Queue full" in r.getMessage()] == []
    exporter.release.set()
    assert processor.force_flush(5000)
    assert sum(exporter.batches) == 8
    assert processor.queued() == 0
    assert drops("export_failed") == 0
    processor.shutdown(1.0)


def test_failed_and_raising_exports_are_counted(drops: Drops) -> None:
    refused = GatedExporter(SpanExportResult.FAILURE)
    refused.release.set()
    processor = DropCountingProcessor(refused, drops.metrics, schedule_delay=60)
    end_spans(processor, 3)
    processor.force_flush(5000)
    assert drops("export_failed") == 3
    raising = DropCountingProcessor(RaisingExporter(), drops.metrics, schedule_delay=60)
    end_spans(raising, 2)
    raising.force_flush(5000)
    assert drops("export_failed") == 5
    processor.shutdown(1.0)
    raising.shutdown(1.0)


def test_spans_after_shutdown_are_counted(drops: Drops) -> None:
    processor = DropCountingProcessor(GatedExporter(), drops.metrics)
    processor.shutdown(1.0)
    end_spans(processor, 2)
    assert drops("shutdown") == 2


def test_shutdown_is_bounded_while_the_exporter_hangs(drops: Drops) -> None:
    exporter = GatedExporter()
    processor = DropCountingProcessor(exporter, drops.metrics, max_queue_size=2, schedule_delay=60)
    end_spans(processor, 2)
    assert exporter.entered.wait(5)
    began = time.monotonic()
    processor.shutdown(0.2)  # waits 0.2 s, then stops the exporter (which releases it)
    assert time.monotonic() - began < 2.0


async def test_dead_collector_never_slows_streams(drops: Drops) -> None:
    """Collector down: every call returns promptly, drops are counted, shutdown is bounded."""
    config = TracingConfig(otlp_endpoint=f"http://127.0.0.1:{free_port()}")
    # What from_config builds, with a small queue so it overflows while the first export retries.
    assert config.otlp_endpoint is not None
    exporter = OTLPSpanExporter(endpoint=traces_url(config.otlp_endpoint), timeout=EXPORT_TIMEOUT)
    tracing = Tracing(config, exporter, drops.metrics, max_queue_size=8)
    slowest = 0.0
    for i in range(50):
        began = time.perf_counter()
        span = tracing.start_stream({}, "demo", request_model="m", provider="simulated")
        assert span is not None
        attempt = span.attempt("primary", "simulated", "http://127.0.0.1:1/x")
        attempt.inject_headers()
        attempt.end(200)
        span.finish(outcome="completed", output_tokens=i)
        slowest = max(slowest, time.perf_counter() - began)
        await asyncio.sleep(0)
    assert slowest < 0.25, f"a stream's tracing calls took {slowest:.3f} s"
    assert drops("queue_full") > 0
    began = time.monotonic()
    await asyncio.to_thread(tracing.shutdown, 0.5)
    assert time.monotonic() - began < 3.0
    assert drops("export_failed") > 0
    # Every one of the 100 spans is accounted for (a race may over-count a queue drop).
    assert drops("queue_full") + drops("export_failed") >= 100


class StuckExporter(SpanExporter):
    """An export that stops for nothing, not even ``shutdown``: an HTTP request in flight to a
    collector that accepted the connection and never answers (the OTLP exporter's shutdown
    cannot interrupt it)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(10)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


def test_shutdown_keeps_its_bound_and_counts_what_it_leaves(drops: Drops) -> None:
    """At most ``timeout`` s (not twice that), and every span not exported by then is counted
    as ``export_failed`` (the process exits with the export thread still stuck)."""
    exporter = StuckExporter()
    processor = DropCountingProcessor(exporter, drops.metrics, max_queue_size=4, schedule_delay=60)
    end_spans(processor, 4)  # a full batch: the worker takes it and gets stuck exporting it
    assert exporter.entered.wait(5)
    end_spans(processor, 3)  # still queued behind it
    began = time.monotonic()
    processor.shutdown(0.3)
    assert time.monotonic() - began < 0.55
    assert drops("export_failed") == 7
    exporter.release.set()  # the stuck export fails at last: already counted, not counted again
    time.sleep(0.2)
    assert drops("export_failed") == 7


# -- a collector that misbehaves on a real socket ------------------------------------------------

ENDLESS = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
FLOOD_LIMIT = 64 * 1024 * 1024
"""A flood stops here (then the collector falls silent): a reader without a bound reads it all
and fails the test, rather than the machine's memory."""


class RawCollector:
    """A collector on loopback that answers each export with ``head`` and then ``body()``'s
    bytes (a coroutine writing to the socket); records what became of the connection."""

    def __init__(self, head: bytes, body: str) -> None:
        self.head = head
        self.body = body
        self.requests = 0
        self.sent = 0
        self.cut = asyncio.Event()
        """The exporter closed the connection while the answer was still coming."""
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/traces"

    async def __aenter__(self) -> RawCollector:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            self.requests += 1
            writer.write(self.head)
            while self.body == "trickle":  # endless: until the exporter hangs up
                writer.write(b"1\r\nx\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
            while self.sent < FLOOD_LIMIT:
                writer.write(ENDLESS)
                await writer.drain()
                self.sent += len(ENDLESS)
            await reader.read()  # silent, the answer unfinished, until the exporter hangs up
            self.cut.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.cut.set()
        finally:
            writer.close()


async def flushed_within(tracing: Tracing, timeout: float) -> bool:
    """``tracing.force_flush()`` in a daemon thread: False when it has not returned within
    ``timeout`` s (the SDK's flush exports in the caller's thread and ignores its own timeout;
    a stuck export must fail the test, not hang the loop's executor at teardown)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()

    def run() -> None:
        result = tracing.force_flush(timeout)
        loop.call_soon_threadsafe(lambda: done.done() or done.set_result(result))

    threading.Thread(target=run, daemon=True).start()
    try:
        return await asyncio.wait_for(done, timeout)
    except TimeoutError:
        return False


CHUNKED_200 = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n"
)


@pytest.mark.parametrize("body", ["flood", "trickle"])
async def test_an_endless_answer_is_cut_and_the_export_ends(drops: Drops, body: str) -> None:
    """A collector that answers 200 and then streams a body forever (fast: memory; slow: a
    stuck export thread) costs one bounded read: the export ends, the connection is closed."""
    async with RawCollector(CHUNKED_200, body) as collector:
        config = TracingConfig(otlp_endpoint=collector.url)
        tracing = Tracing(config, otlp_exporter(collector.url, timeout=0.5), drops.metrics)
        span = tracing.start_stream({}, "demo", request_model="m", provider="simulated")
        assert span is not None
        span.finish(outcome="completed")
        assert await flushed_within(tracing, 10.0)
        await asyncio.wait_for(collector.cut.wait(), 10.0)
        await asyncio.to_thread(tracing.shutdown, 1.0)
    assert collector.requests == 1
    assert drops("export_failed") == 0  # the status line said the spans were taken
    if body == "flood":  # read at most MAX_ANSWER_BYTES (the socket buffers held a little more)
        assert collector.sent < FLOOD_LIMIT


SEEN: web.AppKey[list[int]] = web.AppKey("seen", list)


def retry_after_collector(answers: list[tuple[int, dict[str, str]]]) -> web.Application:
    """An OTLP endpoint answering each export with the next (status, headers), then 200."""
    seen: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        status, headers = answers[len(seen)] if len(seen) < len(answers) else (200, {})
        seen.append(status)
        return web.Response(status=status, headers=headers, body=b"")

    app = web.Application()
    app.router.add_post("/v1/traces", handle)
    app[SEEN] = seen
    return app


@pytest.mark.parametrize(
    ("answers", "delivered"),
    [
        ([(429, {"Retry-After": "0"}), (503, {"Retry-After": "0"})], True),
        ([(503, {"Retry-After": "3600"})], False),  # past the export's time: given up at once
        ([(429, {"Retry-After": "garbage"})], True),  # unreadable: the exporter's own backoff
        ([(400, {})], False),  # refused for good: not retried
    ],
)
async def test_collector_refusals_and_retry_after(
    drops: Drops, answers: list[tuple[int, dict[str, str]]], delivered: bool
) -> None:
    app = retry_after_collector(answers)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        url = f"http://127.0.0.1:{port}/v1/traces"
        config = TracingConfig(otlp_endpoint=url)
        tracing = Tracing(config, otlp_exporter(url, timeout=3.0), drops.metrics)
        span = tracing.start_stream({}, "demo", request_model="m", provider="simulated")
        assert span is not None
        span.finish(outcome="completed")
        await asyncio.to_thread(tracing.force_flush, 10.0)
        await asyncio.to_thread(tracing.shutdown, 1.0)
    finally:
        await runner.cleanup()
    seen = app[SEEN]
    assert (seen[-1] == 200) is delivered
    assert drops("export_failed") == (0 if delivered else 1)
    if not delivered:
        assert len(seen) == 1


async def test_exporter_secrets_stay_out_of_the_logs(
    drops: Drops, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A key in the endpoint's query or user info, or in ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``
    (an entry the SDK cannot parse, which it logs whole), is never in a log line: failed
    exports are logged with the URL's query, the bad entry with its value."""
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "authorization:Bearer hdr-secret-1,x-api-key=hdr-secret-2",
    )
    endpoint = f"http://user:pw-secret-3@127.0.0.1:{free_port()}/v1/traces?api_key=q-secret-4"
    caplog.set_level(logging.DEBUG)
    tracing = Tracing.from_config(TracingConfig(otlp_endpoint=endpoint), drops.metrics)
    assert tracing is not None
    span = tracing.start_stream({}, "demo", request_model="m", provider="simulated")
    assert span is not None
    span.finish(outcome="completed")
    await asyncio.to_thread(tracing.force_flush, 10.0)
    await asyncio.to_thread(tracing.shutdown, 1.0)
    assert drops("export_failed") == 1
    assert "Header format invalid" in caplog.text  # the lines were written, scrubbed
    assert "api_key=" in caplog.text or "REDACTED" in caplog.text
    for secret in ("hdr-secret-1", "hdr-secret-2", "pw-secret-3", "q-secret-4"):
        assert secret not in caplog.text, secret
