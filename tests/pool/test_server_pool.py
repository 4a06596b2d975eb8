"""Pooled routes through the gateway (contract section 11): strategies, failover before the
first byte, rests and probes, refusals. Every deployment is a fake upstream on loopback."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.reload import reload_config
from tests.faults.kit import SSE, chat_chunk, chat_error, post
from tests.pool.server_kit import counts, deployments, held, ok, pooled_route
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import metric_value, running_gateway, wait_for
from tests.support.system import free_port


def dead() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused


async def stream_n(url: str, n: int) -> None:
    for _ in range(n):
        reply = await post(f"{url}/v1/stream/r")
        assert reply.status == 200 and reply.types[-1] == "end", reply.raw


# -- distribution ----------------------------------------------------------------------------


async def test_round_robin_alternates() -> None:
    async with deployments("a", "b", "c") as fakes:
        async with running_gateway({"routes": [pooled_route(fakes)]}) as gw:
            await stream_n(gw.url, 30)
    assert counts(fakes) == {"a": 10, "b": 10, "c": 10}


def served_in_order(fakes: dict[str, FakeUpstream]) -> list[str]:
    """Which deployment served each request, in the order they arrived (one at a time)."""
    seen = [(s.started, name) for name, fake in fakes.items() for s in fake.seen]
    return [name for _, name in sorted(seen)]


async def test_weighted_gives_each_deployment_its_exact_share_in_every_round() -> None:
    async with deployments("a", "b", "c") as fakes:
        route = pooled_route(fakes, strategy="weighted", weights={"a": 5, "b": 3, "c": 2})
        async with running_gateway({"routes": [route]}) as gw:
            await stream_n(gw.url, 100)
    order = served_in_order(fakes)
    assert counts(fakes) == {"a": 50, "b": 30, "c": 20}
    for start in range(0, 100, 10):  # smooth weighted round robin: exact in each round of 10
        assert Counter(order[start : start + 10]) == {"a": 5, "b": 3, "c": 2}, order
    assert "a" not in {order[i] for i in range(100) if order[i - 1] == "a" == order[i - 2]}


async def test_least_busy_avoids_deployments_with_open_streams() -> None:
    async with deployments("a", "b") as fakes:
        fakes["a"].push(held("a"))
        fakes["b"].push(held("b"))
        route = pooled_route(fakes, strategy="least_busy", weights={"a": 2, "b": 1})
        async with running_gateway({"routes": [route]}) as gw, aiohttp.ClientSession() as http:
            url = f"{gw.url}/v1/stream/r"
            first = await http.post(url, json={"messages": [{"role": "user", "content": "x"}]})
            await first.content.readuntil(b"event: delta")  # open on a (the heavier on a tie)
            second = await http.post(url, json={"messages": [{"role": "user", "content": "x"}]})
            await second.content.readuntil(b"event: delta")
            assert counts(fakes) == {"a": 1, "b": 1}  # b was the one with nothing open
            first.close()  # a is free again, b still holds one
            await wait_for(lambda: fakes["a"].open_connections == 0)
            await stream_n(gw.url, 1)
            assert counts(fakes) == {"a": 2, "b": 1}
            second.close()


async def test_latency_prefers_the_fast_deployment_and_still_probes_the_slow_one() -> None:
    async with deployments("fast", "slow") as fakes:
        fakes["slow"].default = ok("slow", delay=0.05)
        route = pooled_route(fakes, strategy="latency")
        async with running_gateway({"routes": [route]}) as gw:
            await stream_n(gw.url, 60)
    got = counts(fakes)
    assert got["fast"] >= 50, got  # after one sample each, the fast one is preferred
    assert got["slow"] >= 3, got  # exploration: the slow one is seen again (every 20th choice)


# -- failover before the first byte ----------------------------------------------------------


async def check_failover(first: Script, reason: str, **route_extra: object) -> None:
    """``a`` answers ``first`` (round robin tries it first), ``b`` serves; ``a`` counts ``reason``."""
    async with deployments("a", "b") as fakes:
        fakes["a"].push(first)
        route = pooled_route(fakes, **route_extra)  # type: ignore[arg-type]
        async with running_gateway({"routes": [route]}) as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
            assert reply.status == 200, reply.raw
            assert reply.text == "from-b" and reply.types[-1] == "end"
            labels = {"route": "r", "deployment": "a", "outcome": reason}
            assert await metric_value(gw.url, "gateway_deployment_requests_total", labels) == 1
            ok_b = {"route": "r", "deployment": "b", "outcome": "ok"}
            assert await metric_value(gw.url, "gateway_deployment_requests_total", ok_b) == 1
    assert counts(fakes) == {"a": 1, "b": 1}


async def test_a_refusing_deployment_is_left_for_the_next() -> None:
    async with deployments("b") as fakes:
        route = pooled_route(fakes)
        route["upstreams"].insert(0, {"name": "a", "base_url": dead(), "model": "m"})
        async with running_gateway({"routes": [route]}) as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
            labels = {"route": "r", "deployment": "a", "outcome": "connect"}
            assert await metric_value(gw.url, "gateway_deployment_requests_total", labels) == 1
    assert reply.status == 200 and reply.text == "from-b"


async def test_a_500_fails_over() -> None:
    await check_failover(Script(status=500), "status_5xx")


async def test_a_429_fails_over_and_rests_for_its_retry_after() -> None:
    async with deployments("a", "b") as fakes:
        fakes["a"].push(Script(status=429, headers={"Retry-After": "30"}))
        async with running_gateway({"routes": [pooled_route(fakes)]}) as gw:
            await stream_n(gw.url, 5)
            rest = {"route": "r", "deployment": "a", "reason": "status_429"}
            assert await metric_value(gw.url, "gateway_deployment_rests_total", rest) == 1
            resting = {"route": "r", "deployment": "a"}
            assert await metric_value(gw.url, "gateway_deployment_resting", resting) == 1
    assert counts(fakes) == {"a": 1, "b": 5}  # a rests: every later stream goes to b


async def test_a_missed_first_event_fails_over() -> None:
    stalled = Script(chunks=[], headers=SSE, hang_after=True)
    await check_failover(stalled, "first_event_timeout", timeouts={"first_event": 0.3})


async def test_a_slow_first_token_fails_over() -> None:
    slow = Script(chunks=[(2.0, chat_chunk("late"))], headers=SSE)
    await check_failover(slow, "first_event_timeout", timeouts={"first_event": 0.3})


async def test_an_error_event_before_content_fails_over() -> None:
    await check_failover(Script(chunks=[(0, chat_error())], headers=SSE), "status_5xx")


async def test_no_failover_after_the_first_byte() -> None:
    async with deployments("a", "b") as fakes:
        broken = Script(chunks=[(0, chat_chunk("part"))], headers=SSE, reset_after=True)
        fakes["a"].push(broken)
        async with running_gateway({"routes": [pooled_route(fakes)]}) as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
            ok_a = {"route": "r", "deployment": "a", "outcome": "ok"}
            assert await metric_value(gw.url, "gateway_deployment_requests_total", ok_a) == 1
    assert reply.status == 200 and reply.text == "part"
    assert reply.types[-1] == "error"  # the truncation reaches the client as an error
    assert counts(fakes) == {"a": 1, "b": 0}


async def test_the_pool_is_tried_before_the_fallbacks() -> None:
    async with deployments("a", "b", "spare") as fakes:
        fakes["a"].push(Script(status=500))
        fakes["b"].push(Script(status=503))
        spare = fakes.pop("spare")
        route = pooled_route(fakes)
        route["fallbacks"] = [
            {"provider": "openai-chat", "upstream": {"base_url": spare.url, "model": "m"}}
        ]
        async with running_gateway({"routes": [route]}) as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
        fakes["spare"] = spare
    assert reply.status == 200 and reply.text == "from-spare"
    assert counts(fakes) == {"a": 1, "b": 1, "spare": 1}


# -- every deployment failing ----------------------------------------------------------------


async def test_every_deployment_rate_limited_is_a_429_with_retry_after() -> None:
    async with deployments("a", "b") as fakes:
        for fake in fakes.values():
            fake.default = Script(status=429, headers={"Retry-After": "20"})
        async with running_gateway({"routes": [pooled_route(fakes)]}) as gw:
            first = await post(f"{gw.url}/v1/stream/r")  # both tried: both 429
            second = await post(f"{gw.url}/v1/stream/r")  # both resting: refused at once
    assert first.status == 429 and second.status == 429
    assert 15 <= int(second.headers["Retry-After"]) <= 20
    assert second.json()["error"]["code"] == "rate_limited"
    assert counts(fakes) == {"a": 1, "b": 1}


async def test_every_deployment_failing_is_a_502() -> None:
    async with deployments("a", "b") as fakes:
        for fake in fakes.values():
            fake.default = Script(status=500)
        async with running_gateway({"routes": [pooled_route(fakes)]}) as gw:
            reply = await post(f"{gw.url}/v1/stream/r")
    assert reply.status == 502, reply.raw
    assert counts(fakes) == {"a": 1, "b": 1}


async def test_every_deployment_full_is_a_503() -> None:
    async with deployments("a", "b") as fakes:
        for fake in fakes.values():
            fake.push(held())
        route = pooled_route(fakes, caps={"a": 1, "b": 1})
        async with running_gateway({"routes": [route]}) as gw, aiohttp.ClientSession() as http:
            url = f"{gw.url}/v1/stream/r"
            body = {"messages": [{"role": "user", "content": "x"}]}
            opened = [await http.post(url, json=body) for _ in range(2)]
            for resp in opened:
                await resp.content.readuntil(b"event: delta")
            reply = await post(url)
            for resp in opened:
                resp.close()
            assert reply.status == 503, reply.raw
            await wait_for(lambda: all(f.open_connections == 0 for f in fakes.values()))
            await asyncio.sleep(0.05)
            await stream_n(gw.url, 1)  # the slots came back when the streams ended
    assert counts(fakes) == {"a": 2, "b": 1}


@pytest.mark.parametrize(
    "mode",
    [
        {"on_client_abort": "drain", "drain_timeout": "1s"},
        {"on_client_abort": "detach", "resume": {"enabled": True, "window": "1s"}},
    ],
    ids=["drain", "detach"],
)
async def test_a_stream_read_on_after_its_client_left_keeps_its_slot(mode: dict[str, Any]) -> None:
    """A drain or a detached stream still reads its deployment: the slot was released as the
    client left, so a deployment with ``max_concurrent: 1`` took a second stream meanwhile."""
    async with deployments("a", "b") as fakes:
        fakes["a"].push(held("a"))
        fakes["b"].push(held("b"))
        route = pooled_route(fakes, caps={"a": 1, "b": 1}, **mode)
        async with running_gateway({"routes": [route]}) as gw, aiohttp.ClientSession() as http:
            url = f"{gw.url}/v1/stream/r"
            body = {"messages": [{"role": "user", "content": "x"}]}
            left = await http.post(url, json=body)  # a
            await left.content.readuntil(b"event: delta")
            left.close()  # its upstream is read on
            kept = await http.post(url, json=body)  # b
            await kept.content.readuntil(b"event: delta")
            reply = await post(url)
            assert reply.status == 503, reply.raw  # a is still busy with the first stream
            assert counts(fakes) == {"a": 1, "b": 1}
            await wait_for(lambda: fakes["a"].open_connections == 0, 5)  # its 1 s is over
            await wait_for(lambda: gw.state.pools["r"].state.views(["a"])[0].active == 0)
            await stream_n(gw.url, 1)  # then a serves again
            kept.close()
    assert counts(fakes) == {"a": 2, "b": 1}


# -- rests and probes ------------------------------------------------------------------------


async def test_a_rest_ends_with_exactly_one_probe() -> None:
    async with deployments("a", "b") as fakes:
        fakes["a"].push(Script(status=500))
        cooldown = {"failures": 1, "window": "10s", "duration": "0.5s"}
        route = pooled_route(fakes, cooldown=cooldown)
        async with running_gateway({"routes": [route]}) as gw:
            await stream_n(gw.url, 1)  # a fails (rests), b serves
            t_rest = time.monotonic()
            await stream_n(gw.url, 4)
            assert counts(fakes) == {"a": 1, "b": 5}  # resting: not offered
            await asyncio.sleep(max(0.0, t_rest + 0.6 - time.monotonic()))
            await stream_n(gw.url, 1)  # the rest is over: this one probes a
            assert counts(fakes) == {"a": 2, "b": 5}
            resting = {"route": "r", "deployment": "a"}  # back as the probe succeeded
            assert await metric_value(gw.url, "gateway_deployment_resting", resting) == 0
            await stream_n(gw.url, 4)  # back in the rotation
    assert counts(fakes)["a"] == 4


async def test_a_failed_probe_rests_again() -> None:
    async with deployments("a", "b") as fakes:
        fakes["a"].push(Script(status=500), Script(status=500))
        cooldown = {"failures": 1, "window": "10s", "duration": "0.4s"}
        async with running_gateway({"routes": [pooled_route(fakes, cooldown=cooldown)]}) as gw:
            await stream_n(gw.url, 1)
            await asyncio.sleep(0.5)
            await stream_n(gw.url, 1)  # the probe fails: b serves, a rests again
            await stream_n(gw.url, 3)
            probe = {"route": "r", "deployment": "a", "reason": "probe_failed"}
            assert await metric_value(gw.url, "gateway_deployment_rests_total", probe) == 1
    assert counts(fakes) == {"a": 2, "b": 5}


# -- open-stream counts ----------------------------------------------------------------------


async def test_open_counts_return_to_zero_however_a_stream_ends() -> None:
    """least_busy balances on the open counts: none may leak or go negative, whether the client
    leaves (before the first event or mid-stream), a deployment fails before the first byte or
    after it, or a limit refuses the request."""
    async with deployments("a", "b") as fakes:
        silent = Script(chunks=[], headers=SSE, hang_after=True)
        cut = Script(chunks=[(0, chat_chunk("part"))], headers=SSE, reset_after=True)
        fakes["a"].push(silent, Script(status=500), held("a"))
        fakes["b"].push(held("b"), cut)
        route = pooled_route(fakes, strategy="least_busy", limits={"concurrent_streams": 1})
        async with running_gateway({"routes": [route]}) as gw, aiohttp.ClientSession() as http:
            url = f"{gw.url}/v1/stream/r"
            body = {"messages": [{"role": "user", "content": "x"}]}
            waiting = asyncio.ensure_future(http.post(url, json=body))  # a: silent
            await wait_for(lambda: len(fakes["a"].seen) == 1)
            waiting.cancel()  # the client leaves before the first event
            await wait_for(lambda: fakes["a"].open_connections == 0)
            streaming = await http.post(url, json=body)  # b: one token, then open
            await streaming.content.readuntil(b"event: delta")
            refused = await post(url)  # the route's limit: refused before any deployment
            streaming.close()  # the client leaves mid-stream
            await wait_for(lambda: fakes["b"].open_connections == 0)
            failed_over = await post(url)  # a answers 500, b serves and is cut after "part"
            assert (refused.status, failed_over.status) == (429, 200), failed_over.raw
            assert failed_over.types[-1] == "error"
            pool = gw.state.pools["r"]
            assert [v.active for v in pool.state.views(pool.names)] == [0, 0]
            for dep in ("a", "b"):
                labels = {"route": "r", "deployment": dep}
                assert await metric_value(gw.url, "gateway_deployment_active_streams", labels) == 0
        assert counts(fakes) == {"a": 2, "b": 2}


# -- reload ----------------------------------------------------------------------------------


async def test_a_reload_removing_a_deployment_lets_its_streams_finish_and_clears_its_rest(
    tmp_path: Path,
) -> None:
    async with deployments("a", "b", "c") as fakes:
        fakes["b"].push(held("b"), Script(status=500))
        cooldown = {"failures": 1, "window": "60s", "duration": "60s"}
        routes = pooled_route(fakes, cooldown=cooldown)
        before = {**routes, "upstreams": routes["upstreams"][:2]}
        async with running_gateway({"routes": [before]}) as gw, aiohttp.ClientSession() as http:
            url = f"{gw.url}/v1/stream/r"
            body = {"messages": [{"role": "user", "content": "x"}]}
            await stream_n(gw.url, 1)  # a
            on_b = await http.post(url, json=body)  # b: held open across the reload
            await on_b.content.readuntil(b"event: delta")
            await stream_n(gw.url, 2)  # a, then b answers 500 (rests) and a serves
            b = {"route": "r", "deployment": "b"}
            assert await metric_value(gw.url, "gateway_deployment_resting", b) == 1
            after = {**routes, "upstreams": [routes["upstreams"][0], routes["upstreams"][2]]}
            path = tmp_path / "gateway.yaml"
            path.write_text(yaml.safe_dump({"routes": [after]}))
            assert reload_config(gw.app, str(path))
            assert await metric_value(gw.url, "gateway_deployment_resting", b) == 0  # gone
            await stream_n(gw.url, 4)  # only a and c now
            assert await metric_value(gw.url, "gateway_deployment_active_streams", b) == 1
            on_b.close()  # the stream opened before the reload releases into the old state
            await wait_for(lambda: fakes["b"].open_connections == 0)
            assert await metric_value(gw.url, "gateway_deployment_active_streams", b) == 0
            pool = gw.state.pools["r"]
            assert "b" not in pool.state._entries
    assert counts(fakes) == {"a": 5, "b": 2, "c": 2}
