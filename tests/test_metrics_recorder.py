"""The per-stream recorder: batched observations reach Prometheus exactly as direct ones would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gateway.metrics import GAP_BUCKETS, BatchedHistogram, Metrics, StreamRecorder


def test_a_batched_histogram_flushes_what_direct_observations_would_show() -> None:
    direct_reg, batched_reg = CollectorRegistry(), CollectorRegistry()
    direct = Histogram("h_seconds", "h", ["route"], buckets=GAP_BUCKETS, registry=direct_reg)
    batched = Histogram("h_seconds", "h", ["route"], buckets=GAP_BUCKETS, registry=batched_reg)
    local = BatchedHistogram(batched.labels("r"))
    rng = random.Random(7)
    values = [rng.choice([0.0, 0.001, 0.03, 0.5, 99.0]) * rng.random() for _ in range(500)]
    values += list(GAP_BUCKETS)  # values exactly on a bound land in that bucket (le is <=)
    for i, value in enumerate(values):
        direct.labels("r").observe(value)
        local.observe(value)
        if i % 97 == 0:
            local.flush()  # flushing several times adds up
    local.flush()
    local.flush()  # an empty flush adds nothing
    got, want = _samples(batched_reg), _samples(direct_reg)
    assert got.keys() == want.keys()
    for name, value in want.items():
        if name.startswith("h_seconds_sum"):  # the same numbers added in another order
            assert abs(got[name] - value) < 1e-9 * max(1.0, value)
        else:
            assert got[name] == value, name


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    lines = generate_latest(registry).decode().splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line and not line.startswith("#")
    }


def test_the_recorder_adds_event_counts_once_and_clears() -> None:
    metrics = Metrics()
    metrics.precreate(["r"])
    rec = StreamRecorder(metrics.route("r"))
    rec.counts.update({"delta": 3, "end": 1})
    rec.flush()
    rec.flush()
    text = generate_latest(metrics.registry).decode()
    assert 'gateway_events_total{route="r",type="delta"} 3.0' in text
    assert 'gateway_events_total{route="r",type="end"} 1.0' in text
