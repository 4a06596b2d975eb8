"""gateway/metrics/route.py: one route's children and the per-stream updates through them."""

from __future__ import annotations

from typing import Any

from gateway.metrics import Metrics, RouteMetrics
from tests.test_metrics import parse, value


def _stream_end_each_update_alone(
    rm: RouteMetrics, events: dict[str, int], usage: dict[str, Any]
) -> None:
    """What a stream's end did before ``stream_finished``: each update its own call."""
    rm.inc(rm.active)  # the stream's start
    rm.inc(rm.active, -1)
    for kind, n in events.items():
        rm.inc(rm.events[kind], n)
    rm.observe(rm.max_gap, 0.25)
    rm.tokens(usage)
    rm.finish("completed", 1.5, "web")


def test_a_streams_last_updates_in_one_call_expose_what_each_update_alone_does() -> None:
    usage: dict[str, Any] = {
        "input_tokens": 3,
        "output_tokens": 7,
        "reasoning_tokens": 0,
        "cached_input_tokens": 2,
        "cache_read_input_tokens": 2,
        "cost_usd": 0.5,
    }
    events = {"created": 1, "delta": 2, "usage": 1, "end": 1}
    separate, together = Metrics(), Metrics()
    for metrics in (separate, together):
        metrics.precreate(["r"], {"r": ["p"]}, ["web"])
    _stream_end_each_update_alone(separate.route("r", ["web"]), dict(events), usage)
    rm = together.route("r", ["web"])
    rm.inc(rm.active)
    pending = dict(events)
    rm.stream_finished(pending, usage, "completed", 1.5, "web", 0.25)
    assert pending == {}  # taken
    got = parse(together.exposition()[0].decode())
    assert got == parse(separate.exposition()[0].decode())
    assert value(got, "gateway_events_total", route="r", type="delta") == 2
    assert value(got, "gateway_tokens_total", route="r", kind="cache_read_input") == 2
    assert value(got, "gateway_active_streams", route="r") == 0
    assert value(got, "gateway_stream_max_gap_seconds_count", route="r") == 1
    # No content, no gap: a stream that wrote none observes no largest gap.
    rm.inc(rm.active)
    rm.stream_finished({}, {}, "upstream_error", 0.1, None, None)
    got = parse(together.exposition()[0].decode())
    assert value(got, "gateway_stream_max_gap_seconds_count", route="r") == 1
    assert value(got, "gateway_requests_total", route="r", outcome="upstream_error") == 1


def test_a_route_binds_the_configured_apps_so_their_counts_need_no_label_lookup() -> None:
    """The state binds each route with ``Metrics.route(name)``: the app key names come from the
    last ``precreate`` (the config's), so a stream's app count is a bound child, not a
    ``labels()`` call (a lock and a lookup) per stream."""
    metrics = Metrics()
    metrics.precreate(["r"], {"r": ["p"]}, ["web"])
    rm = metrics.route("r")

    def no_lookup(*_: str) -> None:
        raise AssertionError("a configured app's child was looked up per stream")

    family = metrics.app_requests
    family.labels = no_lookup  # type: ignore[method-assign,assignment]
    rm.inc(rm.active)
    rm.stream_finished({}, {}, "completed", 0.5, "web", None)
    del family.labels  # the class's own again
    got = parse(metrics.exposition()[0].decode())
    assert value(got, "gateway_app_requests_total", app="web", route="r", outcome="completed") == 1
