"""``bench.ablate`` runs the gateway with always-on parts stubbed, to price each part."""

from __future__ import annotations

import re

import aiohttp

from bench.ablate import STUBS, start_variant, summarise

BODY = {"messages": [{"role": "user", "content": "bench:3:0:0:flow"}]}


def test_summarise_prices_each_part_against_base_round_by_round() -> None:
    got = summarise(
        {
            "base": [300.0, 310.0, 400.0],  # the last round was a busy one, for every variant
            "base-again": [305.0, 306.0, 398.0],
            "log": [280.0, 290.0, 370.0],
        }
    )
    assert got["us_per_request"] == {"base": 310.0, "base-again": 306.0, "log": 290.0}
    assert got["noise_us"] == 2.0  # -5, 4, 2
    assert got["cost_us"] == {"log": 20.0}  # 20, 20, 30


async def _one_stream(port: int) -> tuple[int, str, bytes, str]:
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/stream/chat", json=BODY) as resp:
            body = await resp.read()
            status, request_id = resp.status, resp.headers["X-Request-Id"]
        async with http.get(f"{url}/metrics") as metrics:
            return status, request_id, body, await metrics.text()


async def _variant_stream(
    name: str, parts: list[str], upstream_port: int
) -> tuple[int, str, bytes, str, str]:
    """One stream through a variant: its status, request id, body, ``/metrics`` and log."""
    peer = start_variant(name, parts, upstream_port)
    try:
        status, request_id, body, metrics = await _one_stream(peer.port)
        assert peer.workdir is not None
        log = (peer.workdir / f"{peer.name}.log").read_text()
    finally:
        peer.stop()
    return status, request_id, body, metrics, log


def _requests_counted(metrics: str) -> float:
    return sum(float(v) for v in re.findall(r"^gateway_requests_total\{.*\} (\S+)$", metrics, re.M))


async def test_a_variant_streams_without_its_stubbed_parts(upstream_port: int) -> None:
    for parts in ([], list(STUBS)):
        name = "all" if parts else "base"
        status, request_id, body, metrics, log = await _variant_stream(name, parts, upstream_port)
        assert status == 200
        assert body.count(b"event: delta") == 3 and b"event: end" in body
        if parts:  # metrics, the log line and random ids are gone; the stream is not
            assert request_id == "0" * 32
            assert _requests_counted(metrics) == 0
            assert '"event":"stream"' not in log
        else:
            assert re.fullmatch(r"[0-9a-f]{32}", request_id) and request_id != "0" * 32
            assert _requests_counted(metrics) == 1
            assert '"event":"stream"' in log


async def test_the_tally_stub_drops_only_the_metric_updates(upstream_port: int) -> None:
    status, _, body, metrics, log = await _variant_stream("no-tally", ["tally"], upstream_port)
    assert status == 200 and b"event: end" in body
    assert _requests_counted(metrics) == 0
    assert '"event":"stream"' in log
