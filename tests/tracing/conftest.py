"""Fixtures: a real OTLP/HTTP receiver on loopback and tracing parts exporting to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.config.model import TracingConfig
from gateway.metrics import TraceMetrics
from gateway.tracing import Tracing
from tests.support.otlp_receiver import OTLPReceiver

MakeTracing = Callable[..., Tracing]


class Drops:
    """A real :class:`TraceMetrics` in its own registry, read back by reason."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = TraceMetrics(self.registry)

    def __call__(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "gateway_trace_spans_dropped_total", {"reason": reason}
        )
        assert value is not None
        return value


@pytest.fixture
async def receiver() -> AsyncIterator[OTLPReceiver]:
    r = await OTLPReceiver().start()
    yield r
    await r.stop()


@pytest.fixture
def drops() -> Drops:
    return Drops()


@pytest.fixture
async def make_tracing(receiver: OTLPReceiver, drops: Drops) -> AsyncIterator[MakeTracing]:
    made: list[Tracing] = []

    def make(endpoint: str | None = None, **options: Any) -> Tracing:
        config = TracingConfig(otlp_endpoint=endpoint or receiver.url, **options)
        tracing = Tracing.from_config(config, drops.metrics)
        assert tracing is not None
        made.append(tracing)
        return tracing

    yield make
    for tracing in made:
        await asyncio.to_thread(tracing.shutdown, 2.0)


async def flush(tracing: Tracing) -> None:
    """Export what is queued without blocking the loop the receiver runs on."""
    assert await asyncio.to_thread(tracing.force_flush)
