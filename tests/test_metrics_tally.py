"""gateway/metrics/tally.py: the streams' metric updates, pending and then added in one go.

What a scrape sees must not change: sums exact, a gauge's net, histogram buckets as the same
``observe`` calls give; pending updates reach the series by the interval, before an exposition,
and at shutdown.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.metrics import GAP_BUCKETS, Metrics, Tally
from tests.ops.support import stream
from tests.support.gateway import running_gateway


def _families() -> tuple[CollectorRegistry, Counter, Gauge, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["route"], registry=registry)
    gauge = Gauge("g", "g", ["route"], registry=registry)
    histogram = Histogram("h", "h", ["route"], buckets=GAP_BUCKETS, registry=registry)
    return registry, counter, gauge, histogram


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels or {"route": "r"})


async def test_updates_wait_for_the_flush_then_add_up_exactly() -> None:
    registry, counter, gauge, _ = _families()
    tally = Tally(interval=3600)
    tally.inc(counter.labels("r"))
    tally.inc(counter.labels("r"), 2.5)
    tally.inc(gauge.labels("r"))
    tally.inc(gauge.labels("r"))
    tally.inc(gauge.labels("r"), -1)
    assert _value(registry, "c_total") == 0  # pending
    assert _value(registry, "g") == 0
    tally.flush()
    assert _value(registry, "c_total") == 3.5
    assert _value(registry, "g") == 1  # the net of +1 +1 -1
    tally.flush()  # nothing pending: nothing added twice
    assert _value(registry, "c_total") == 3.5


async def test_add_is_inc_for_each_child_and_arms_the_flush() -> None:
    registry, counter, gauge, _ = _families()
    tally = Tally(interval=0.02)
    tally.inc(counter.labels("r"))
    tally.add({counter.labels("r"): 2, gauge.labels("r"): -1})
    assert _value(registry, "c_total") == 0  # pending
    await asyncio.sleep(0.1)
    assert _value(registry, "c_total") == 3
    assert _value(registry, "g") == -1


async def test_a_pending_update_flushes_by_itself_within_the_interval() -> None:
    registry, counter, _, histogram = _families()
    tally = Tally(interval=0.02)
    tally.inc(counter.labels("r"))
    tally.observe(histogram.labels("r"), 0.5)
    assert _value(registry, "c_total") == 0
    await asyncio.sleep(0.1)
    assert _value(registry, "c_total") == 1
    assert _value(registry, "h_count") == 1
    tally.inc(counter.labels("r"))  # the next update arms the timer again
    await asyncio.sleep(0.1)
    assert _value(registry, "c_total") == 2


def test_without_an_event_loop_updates_apply_at_once() -> None:
    registry, counter, _, histogram = _families()
    tally = Tally(interval=3600)
    tally.inc(counter.labels("r"), 4)
    tally.observe(histogram.labels("r"), 0.01)
    assert _value(registry, "c_total") == 4
    assert _value(registry, "h_count") == 1


async def test_a_bound_batch_flushes_once_touched() -> None:
    registry, _, _, histogram = _families()
    tally = Tally(interval=3600)
    batch = tally.histogram(histogram.labels("r"))
    batch.observe(0.5)
    tally.flush()
    assert _value(registry, "h_count") == 0  # not touched: not known to be pending
    tally.touch(batch)
    tally.flush()
    assert _value(registry, "h_count") == 1


async def test_with_several_workers_a_stream_end_flushes_at_once() -> None:
    registry, counter, _, _ = _families()
    tally = Tally(interval=3600, eager=True)
    tally.inc(counter.labels("r"))
    assert _value(registry, "c_total") == 0
    tally.stream_ended()
    assert _value(registry, "c_total") == 1
    lazy = Tally(interval=3600)
    lazy.inc(counter.labels("r"))
    lazy.stream_ended()  # one worker: the interval (or a scrape) flushes
    assert _value(registry, "c_total") == 1


def test_metrics_are_eager_in_multiprocess_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert not Metrics().tally.eager
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert Metrics().tally.eager


async def test_histogram_exposition_is_what_direct_observations_give() -> None:
    values = [0.0, 0.0004, 0.003, 0.003, 0.07, 1.0, 2.5, 45.0, 1e9, float("nan")]
    direct_registry, _, _, direct = _families()
    for v in values:
        direct.labels("r").observe(v)
    tallied_registry, _, _, tallied = _families()
    tally = Tally(interval=3600)
    for v in values[:4]:
        tally.observe(tallied.labels("r"), v)
    batch = tally.histogram(tallied.labels("r"))  # the per-write path's bound batch
    for v in values[4:]:
        batch.observe(v)
    tally.touch(batch)  # what the stream's timer and its end do for the bound batches
    tally.flush()
    assert generate_latest(tallied_registry) == generate_latest(direct_registry)


async def test_an_exposition_includes_every_pending_update() -> None:
    metrics = Metrics()
    metrics.tally.interval = 3600
    metrics.precreate(["r"])
    route = metrics.route("r")
    route.finish("completed", 0.25, None)
    assert (
        metrics.registry.get_sample_value(
            "gateway_requests_total", {"route": "r", "outcome": "completed"}
        )
        == 0
    )
    text = metrics.exposition()[0].decode()
    assert 'gateway_requests_total{outcome="completed",route="r"} 1.0' in text
    assert 'gateway_stream_duration_seconds_count{outcome="completed",route="r"} 1.0' in text


async def test_the_gateway_flushes_pending_updates_when_it_stops() -> None:
    doc = {"routes": [{"name": "demo", "provider": "simulated", "options": {"words": 3}}]}
    async with running_gateway(doc) as gw:
        metrics = gw.state.metrics
        metrics.tally.interval = 3600  # only the shutdown can flush now
        status, _ = await stream(gw.url, "/v1/stream/demo")
        assert status == 200
        labels = {"route": "demo", "outcome": "completed"}
        assert metrics.registry.get_sample_value("gateway_requests_total", labels) == 0
    assert metrics.registry.get_sample_value("gateway_requests_total", labels) == 1
    assert metrics.registry.get_sample_value("gateway_active_streams", {"route": "demo"}) == 0
