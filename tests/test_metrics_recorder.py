"""The per-stream recorder: batched observations reach Prometheus exactly as direct ones would."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gateway.metrics import GAP_BUCKETS, BatchedHistogram, Metrics, StreamRecord, StreamRecorder
from tests.test_metrics import parse
from tests.test_metrics import value as sample_value


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


def _record(metrics: Metrics) -> StreamRecord:
    metrics.precreate(["r"], {"r": ["p"]}, ["web"])
    record = StreamRecord(metrics.route("r"), t0=100.0, app="web")
    record.started()
    return record


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return sample_value(parse(metrics.exposition()[0].decode()), name, route="r", **labels)


def test_a_stream_its_client_stopped_is_a_client_abort() -> None:
    """``DELETE`` ends a resumable stream with ``stopped``: the client's doing (as Stop), never a
    rejection, whose outcome says "refused before streaming" and counts as an error."""
    metrics = Metrics()
    record = _record(metrics)
    record.upstream_answered(200, 100.1)
    record.failed("stopped", upstream=False)
    record.finished(101.0)
    assert _value(metrics, "gateway_requests_total", outcome="client_abort") == 1
    assert _value(metrics, "gateway_requests_total", outcome="rejected") == 0
    assert _value(metrics, "gateway_client_aborts_total", phase="before_first_token") == 1
    assert _value(metrics, "gateway_stream_duration_seconds_count", outcome="client_abort") == 1


def test_a_client_that_leaves_as_its_stop_ends_the_stream_is_one_abort() -> None:
    metrics = Metrics()
    record = _record(metrics)
    record.failed("stopped", upstream=False)
    record.aborted(upstream_open=False)  # it left as the terminal event went out
    record.finished(101.0)
    assert _value(metrics, "gateway_client_aborts_total", phase="before_upstream_headers") == 1
    assert _value(metrics, "gateway_requests_total", outcome="client_abort") == 1


def test_a_refusal_after_admission_is_counted_by_code_and_not_timed() -> None:
    """A pool with no deployment free refuses the stream (429/503) once it started: counted as
    the admission's refusals are, by code, and not timed (no stream ran)."""
    metrics = Metrics()
    record = _record(metrics)
    record.failed("rate_limited", upstream=False)
    record.finished(100.5)
    assert _value(metrics, "gateway_requests_total", outcome="rejected") == 1
    assert _value(metrics, "gateway_rejections_total", code="rate_limited") == 1
    assert _value(metrics, "gateway_stream_duration_seconds_count", outcome="rejected") == 0
    assert _value(metrics, "gateway_active_streams") == 0


def test_upstream_headers_are_timed_once_for_the_attempt_that_served() -> None:
    """An attempt that answered and was then left for a fallback (an early error, a first-event
    timeout) is not the request's answer: one observation per request, the serving one's."""
    metrics = Metrics()
    record = _record(metrics)
    record.upstream_answered(200, 100.25)
    record.upstream_retry()  # discarded: the next target serves
    record.upstream_answered(200, 101.0)
    record.upstream_chosen()
    record.finished(102.0)
    assert _value(metrics, "gateway_upstream_headers_seconds_count") == 1
    assert _value(metrics, "gateway_upstream_headers_seconds_sum") == 1.0


def test_an_answer_left_unchosen_is_timed_when_the_stream_ends() -> None:
    """An attempt held back until its first content when the client left is still the
    request's answer: its headers are timed at the end."""
    metrics = Metrics()
    record = _record(metrics)
    record.upstream_answered(200, 100.5)
    record.aborted(upstream_open=True)
    record.finished(101.0)
    assert _value(metrics, "gateway_upstream_headers_seconds_count") == 1
    assert _value(metrics, "gateway_upstream_headers_seconds_sum") == 0.5
