"""``bench.ttft`` splits the time to first token into the request leg and the token leg, from
the fake upstream's marks of tagged streams."""

from __future__ import annotations

from bench import loadgen
from bench.peers import start_direct
from bench.scenarios import HOST
from bench.ttft import Legs, Shape, run_shape, summarise


def test_summarise_takes_each_legs_quantiles() -> None:
    legs = [Legs(0.0, 0.001 * i, 0.010 + 0.001 * i, 0.0105 + 0.002 * i) for i in range(1, 101)]
    got = summarise(legs)
    assert got["streams"] == 100
    assert got["request_p50_ms"] == 51.0  # nearest rank: the 51st of 1..100 ms
    assert got["request_p99_ms"] == 100.0
    assert got["token_p50_ms"] == 51.5  # 0.5 + i ms
    assert got["both_p99_ms"] == 200.5


async def test_run_shape_times_both_legs_of_every_stream(upstream_port: int) -> None:
    shape = Shape("t", 2, 0.4, 3, 20, 5, 0.0)
    legs = await run_shape(start_direct(upstream_port), shape, 7, upstream_port)
    assert len(legs) >= 4  # two clients, streams of ~30 ms, 0.4 s
    for leg in legs:
        assert leg.sent < leg.arrived < leg.written < leg.seen
        assert 0.015 < leg.written - leg.arrived < 0.2  # the model's 20 ms before the first token
        assert 0 < leg.request < 0.05 and 0 < leg.token < 0.05
    # /_marks forgets what it returned: the next call has none of these streams.
    assert (await loadgen.get_json(HOST, upstream_port, "/_marks"))["marks"] == {}


async def test_an_untagged_stream_leaves_no_mark(upstream_port: int) -> None:
    peer = start_direct(upstream_port)
    conn = await loadgen.connect(HOST, upstream_port, loadgen.Tally())
    assert await conn.send(peer.request("chat", "bench:2:0:0:flow"))
    assert conn.transport is not None
    conn.transport.close()
    assert (await loadgen.get_json(HOST, upstream_port, "/_marks"))["marks"] == {}
