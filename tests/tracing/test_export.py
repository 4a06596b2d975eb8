"""gateway/tracing/export.py: batching off the loop, the bounded queue and counted drops."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.config.model import TracingConfig
from gateway.metrics import TRACE_DROP_REASONS
from gateway.tracing import Tracing
from gateway.tracing.export import DropCountingProcessor, traces_url
from gateway.tracing.tracer import EXPORT_TIMEOUT
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


def test_a_full_queue_drops_and_counts(drops: Drops) -> None:
    exporter = GatedExporter()
    processor = DropCountingProcessor(exporter, drops.metrics, max_queue_size=4, schedule_delay=60)
    end_spans(processor, 4)  # a full batch wakes the worker, which blocks in export
    assert exporter.entered.wait(5)
    assert processor.queued() == 0
    end_spans(processor, 10)  # 4 fit, the 6 oldest of them are pushed out
    assert processor.queued() == 4
    assert drops("queue_full") == 6
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
