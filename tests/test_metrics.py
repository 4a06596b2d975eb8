"""gateway/metrics.py and the metrics a running gateway exports (contract section 7, issue 4).

Every series exists at 0 before traffic for every configured route; streams record what they
should; request text never becomes a label; ``promtool check metrics`` accepts real output.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from subprocess import PIPE
from typing import Any

import aiohttp
import pytest

from gateway.events import EVENT_TYPES
from gateway.metrics import (
    ABORT_PHASES,
    OUTCOMES,
    REJECTION_CODES,
    STATUS_CLASSES,
    TOKEN_KINDS,
    Metrics,
    status_class,
)
from tests.faults.kit import HELLO, SSE, chat_chunk, chat_error, chat_route, chat_stream
from tests.ops.support import abort_mid_stream, stream
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway, wait_for
from tests.support.system import require_binary

FAST = {"first_token_delay": "20ms", "token_interval": "2ms"}
DOC: dict[str, Any] = {
    "routes": [
        {
            "name": "demo",
            "provider": "simulated",
            "options": {"words": 8, "reasoning": True, **FAST},
        },
        {
            "name": "failing",
            "provider": "simulated",
            "options": {"words": 20, "fail_after": 3, **FAST},
        },
        {
            "name": "cut",
            "provider": "simulated",
            "options": {"words": 20, "truncate_after": 3, **FAST},
        },
        {
            "name": "slow",
            "provider": "simulated",
            "options": {"words": 400, "first_token_delay": "10ms", "token_interval": "20ms"},
        },
    ]
}
ROUTES = [r["name"] for r in DOC["routes"]]
HISTOGRAMS = (
    "gateway_upstream_headers_seconds",
    "gateway_time_to_first_token_seconds",
    "gateway_inter_token_seconds",
    "gateway_stream_max_gap_seconds",
    "gateway_overhead_seconds",
    "gateway_upstream_cancel_seconds",
)


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Exposition text -> {(sample name, labels): value}."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return await r.text()


# -- unit: the recording objects ---------------------------------------------------------------


def test_status_class_is_a_closed_set() -> None:
    assert [status_class(s) for s in (200, 204, 301, 404, 429, 500, 503, 599, 600, 101, None)] == [
        "2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "5xx", "5xx", "error", "error",
    ]  # fmt: skip
    assert {status_class(s) for s in range(0, 1000)} | {status_class(None)} <= set(STATUS_CLASSES)


def test_route_metrics_record_per_stream_values() -> None:
    metrics = Metrics()
    metrics.precreate(["r"], {"r": ["p"]}, ["web"])
    rm = metrics.route("r", ["web"])
    rm.finish("completed", 1.5, "web")
    rm.finish("client_abort", 0.5, "unknown-app")  # not pre-bound: still counted
    rm.rejected("unauthorized", None)
    rm.tokens({"input_tokens": 3, "output_tokens": 7, "reasoning_tokens": 0, "bogus": 9})
    rm.upstream_status(503)
    rm.abort("mid_stream")
    samples = parse(metrics.exposition()[0].decode())
    assert value(samples, "gateway_requests_total", route="r", outcome="completed") == 1
    assert value(samples, "gateway_requests_total", route="r", outcome="rejected") == 1
    assert (
        value(samples, "gateway_app_requests_total", app="web", route="r", outcome="completed") == 1
    )
    assert (
        value(
            samples,
            "gateway_app_requests_total",
            app="unknown-app",
            route="r",
            outcome="client_abort",
        )
        == 1
    )
    assert (
        value(samples, "gateway_stream_duration_seconds_sum", route="r", outcome="completed") == 1.5
    )
    # A rejection is counted, not timed: no stream ran.
    assert (
        value(samples, "gateway_stream_duration_seconds_count", route="r", outcome="rejected") == 0
    )
    assert value(samples, "gateway_rejections_total", route="r", code="unauthorized") == 1
    assert value(samples, "gateway_tokens_total", route="r", kind="input") == 3
    assert value(samples, "gateway_tokens_total", route="r", kind="output") == 7
    assert value(samples, "gateway_upstream_responses_total", route="r", status_class="5xx") == 1
    assert value(samples, "gateway_client_aborts_total", route="r", phase="mid_stream") == 1
    assert not any(name.endswith("_created") for name, _ in samples)


def test_series_names_follow_prometheus_conventions() -> None:
    metrics = Metrics()
    metrics.precreate(["r"], {"r": ["p"]}, ["web"])
    text = metrics.exposition()[0].decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    assert types
    for name, kind in types.items():
        assert name.startswith("gateway_"), name
        if kind == "counter":
            assert name.endswith("_total"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name  # base unit in the name
        if kind == "gauge":
            assert not name.endswith("_total"), name
        assert not re.search(r"_(ms|milliseconds|us|microseconds|minutes)\b", name), name


# -- a running gateway -------------------------------------------------------------------------


async def test_every_series_exists_at_zero_before_any_traffic() -> None:
    doc = {**DOC, "auth": {"keys": [{"name": "web-app", "key": "k" * 24}]}}
    async with running_gateway(doc) as gw:
        samples = parse(await scrape(gw.url))
    assert all(v == 0 for v in samples.values()), [k for k, v in samples.items() if v]
    expected: list[tuple[str, dict[str, str]]] = []
    for route in ROUTES:
        r = {"route": route}
        expected += [("gateway_requests_total", {**r, "outcome": o}) for o in OUTCOMES]
        expected += [
            ("gateway_app_requests_total", {"app": "web-app", **r, "outcome": o}) for o in OUTCOMES
        ]
        expected += [
            ("gateway_stream_duration_seconds_count", {**r, "outcome": o}) for o in OUTCOMES
        ]
        expected += [("gateway_client_aborts_total", {**r, "phase": p}) for p in ABORT_PHASES]
        expected += [("gateway_tokens_total", {**r, "kind": k}) for k in TOKEN_KINDS]
        expected += [("gateway_events_total", {**r, "type": t}) for t in EVENT_TYPES]
        expected += [
            ("gateway_upstream_responses_total", {**r, "status_class": c}) for c in STATUS_CLASSES
        ]
        expected += [("gateway_rejections_total", {**r, "code": c}) for c in REJECTION_CODES]
        expected += [
            ("gateway_upstream_attempts_total", {**r, "upstream": "simulated", "result": "ok"})
        ]
        expected += [(f"{h}_count", r) for h in HISTOGRAMS]
        expected += [(f"{h}_bucket", {**r, "le": "+Inf"}) for h in HISTOGRAMS]
        for name in (
            "gateway_active_streams",
            "gateway_tokens_after_abort_total",
            "gateway_heartbeats_total",
            "gateway_slow_client_disconnects_total",
        ):
            expected.append((name, r))
    expected.append(("gateway_limit_backend_errors_total", {}))
    missing = [(n, lab) for n, lab in expected if (n, frozenset(lab.items())) not in samples]
    assert not missing


async def test_streams_record_time_split_events_tokens_and_outcomes() -> None:
    async with running_gateway(DOC) as gw:
        status, body = await stream(gw.url, "/v1/stream/demo")
        assert status == 200
        for route in ("failing", "cut"):
            assert (await stream(gw.url, f"/v1/stream/{route}"))[0] == 200
        await wait_for(lambda: not gw.state.sessions)
        s = parse(await scrape(gw.url))

    sent = re.findall(rb"^event: (\w+)$", body, re.MULTILINE)
    for kind in EVENT_TYPES:  # the counters agree with what the client received
        assert value(s, "gateway_events_total", route="demo", type=kind) == sent.count(
            kind.encode()
        )
    content_events = sum(sent.count(k) for k in (b"delta", b"reasoning", b"tool_call"))
    assert content_events > 5
    ttft_sum = value(s, "gateway_time_to_first_token_seconds_sum", route="demo")
    headers_sum = value(s, "gateway_upstream_headers_seconds_sum", route="demo")
    duration = value(s, "gateway_stream_duration_seconds_sum", route="demo", outcome="completed")
    assert value(s, "gateway_time_to_first_token_seconds_count", route="demo") == 1
    assert headers_sum <= ttft_sum <= duration  # the three-way time split is ordered
    assert 0.02 <= ttft_sum < 1.0  # first_token_delay is 20 ms
    # One observation per gap between consecutive content events (contract section 7).
    gaps = value(s, "gateway_inter_token_seconds_count", route="demo")
    assert gaps == content_events - 1
    max_gap = value(s, "gateway_stream_max_gap_seconds_sum", route="demo")
    assert value(s, "gateway_stream_max_gap_seconds_count", route="demo") == 1
    assert 0 < max_gap <= value(s, "gateway_inter_token_seconds_sum", route="demo")
    assert value(s, "gateway_overhead_seconds_count", route="demo") >= 1
    assert value(s, "gateway_overhead_seconds_sum", route="demo") < duration
    assert value(s, "gateway_tokens_total", route="demo", kind="output") > 0
    assert value(s, "gateway_tokens_total", route="demo", kind="reasoning") > 0
    assert value(s, "gateway_upstream_responses_total", route="demo", status_class="2xx") == 1
    assert value(s, "gateway_requests_total", route="demo", outcome="completed") == 1
    assert value(s, "gateway_requests_total", route="failing", outcome="upstream_error") == 1
    assert value(s, "gateway_requests_total", route="cut", outcome="upstream_truncated") == 1
    for route in ROUTES:
        assert value(s, "gateway_active_streams", route=route) == 0


async def test_rejections_and_upstream_status_classes() -> None:
    async with running_gateway(DOC) as gw:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{gw.url}/v1/stream/demo", data=b"{nope") as r:
                assert r.status == 415
            headers = {"Content-Type": "application/json"}
            async with session.post(f"{gw.url}/v1/stream/demo", data=b"{no", headers=headers) as r:
                assert r.status == 400
        s = parse(await scrape(gw.url))
    assert value(s, "gateway_rejections_total", route="demo", code="unsupported_media_type") == 1
    assert value(s, "gateway_rejections_total", route="demo", code="invalid_json") == 1
    assert value(s, "gateway_requests_total", route="demo", outcome="rejected") == 2
    assert value(s, "gateway_stream_duration_seconds_count", route="demo", outcome="rejected") == 0


async def test_mid_stream_abort_records_phase_and_cancel_latency() -> None:
    async with running_gateway(DOC) as gw:
        await abort_mid_stream(gw.port, "/v1/stream/slow")
        await wait_for(lambda: not gw.state.sessions)
        s = parse(await scrape(gw.url))
    assert value(s, "gateway_client_aborts_total", route="slow", phase="mid_stream") == 1
    assert value(s, "gateway_requests_total", route="slow", outcome="client_abort") == 1
    assert value(s, "gateway_upstream_cancel_seconds_count", route="slow") == 1
    assert value(s, "gateway_upstream_cancel_seconds_sum", route="slow") < 0.1
    assert value(s, "gateway_active_streams", route="slow") == 0


async def test_drain_counts_only_the_tokens_generated_after_the_abort() -> None:
    options = {"words": 60, "first_token_delay": "5ms", "token_interval": "3ms"}
    doc = {
        "routes": [
            {
                "name": "drained",
                "provider": "simulated",
                "options": options,
                "on_client_abort": "drain",
                "drain_timeout": "5s",
            }
        ]
    }
    async with running_gateway(doc) as gw:
        await abort_mid_stream(gw.port, "/v1/stream/drained")
        url = gw.url

        async def drained() -> bool:
            s = parse(await scrape(url))
            return value(s, "gateway_tokens_total", route="drained", kind="output") > 0

        for _ in range(100):
            if await drained():
                break
            await asyncio.sleep(0.05)
        s = parse(await scrape(gw.url))
    output = value(s, "gateway_tokens_total", route="drained", kind="output")
    after = value(s, "gateway_tokens_after_abort_total", route="drained")
    # The client saw at least one delta before leaving, so not every token came after the abort.
    assert output == 60
    assert 0 < after < output


# -- bounded labels and promtool ---------------------------------------------------------------


async def test_request_text_never_becomes_a_label() -> None:
    marker = "zq" + uuid.uuid4().hex[:12]
    doc = {
        "routes": [
            *DOC["routes"],
            {
                "name": "echo",
                "provider": "simulated",
                "allow_model_override": True,
                "options": {"echo": True, **FAST},
            },
        ]
    }
    body = {
        "messages": [{"role": "user", "content": f"say {marker}"}],
        "metadata": {marker: marker, "user": marker},
        "model": marker,
    }
    headers = {
        "X-Marker": marker,
        "User-Agent": marker,
        "Authorization": f"Bearer {marker}",
        "X-Request-Id": marker,
        "Origin": f"https://{marker}.example",
    }
    async with running_gateway(doc) as gw, aiohttp.ClientSession(headers=headers) as session:
        for path in ("/v1/stream/echo", "/v1/stream/demo", "/v1/stream/failing"):
            for query in ("", f"?x={marker}", f"?format={marker}", f"?{marker}=1"):
                async with session.post(f"{gw.url}{path}{query}", json=body) as r:
                    await r.read()
        async with session.post(f"{gw.url}/v1/stream/echo", json=body) as r:
            assert marker.encode() in await r.read()  # the marker did go through the gateway
        for path in (f"/v1/stream/{marker}", f"/v1/stream/demo/{marker}", f"/{marker}"):
            async with session.post(f"{gw.url}{path}", json=body) as r:
                assert r.status == 404
        await wait_for(lambda: not gw.state.sessions)
        text = await scrape(gw.url)
    assert "gateway_requests_total" in text
    assert marker not in text
    assert value(parse(text), "gateway_requests_total", route="echo", outcome="completed") >= 1


async def test_promtool_check_metrics_accepts_real_output() -> None:
    promtool = require_binary("promtool")
    async with running_gateway(DOC) as gw:
        await asyncio.gather(
            *(stream(gw.url, f"/v1/stream/{r}") for r in ("demo", "failing", "cut"))
        )
        await abort_mid_stream(gw.port, "/v1/stream/slow")
        await wait_for(lambda: not gw.state.sessions)
        text = await scrape(gw.url)
    assert "gateway_client_aborts_total" in text and 'outcome="client_abort"' in text
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(text.encode()), 30)
    report = (out + err).decode()
    assert proc.returncode == 0, report
    assert report.strip() == ""  # no lint warnings either


@pytest.mark.parametrize("route", ["demo", "failing", "cut"])
async def test_traffic_adds_no_series(route: str) -> None:
    """Series per route are fixed at start-up: traffic moves values, never adds label sets."""
    async with running_gateway(DOC) as gw:
        before = {k for k in parse(await scrape(gw.url)) if ("route", route) in k[1]}
        for _ in range(2):
            await stream(gw.url, f"/v1/stream/{route}")
        await wait_for(lambda: not gw.state.sessions)
        after = {k for k in parse(await scrape(gw.url)) if ("route", route) in k[1]}
    assert after == before


@pytest.mark.parametrize("split", ["one-read", "one-byte-per-read"])
async def test_inter_token_observes_each_gap_between_content_events(split: str) -> None:
    """N content events give N - 1 observations whatever the network's read sizes; events
    written together are gaps of zero (they used to be one observation per write)."""
    texts = [f"t{i} " for i in range(12)]
    body = chat_stream(*texts)
    pieces = [body] if split == "one-read" else [body[i : i + 1] for i in range(len(body))]
    fake = await FakeUpstream().start()
    fake.default = Script(chunks=[(0, p) for p in pieces], headers=SSE)
    try:
        async with running_gateway({"routes": [chat_route("r", fake.url)]}) as gw:
            status, _ = await stream(gw.url, "/v1/stream/r")
            await wait_for(lambda: not gw.state.sessions)
            s = parse(await scrape(gw.url))
    finally:
        await fake.stop()
    assert status == 200
    assert value(s, "gateway_inter_token_seconds_count", route="r") == len(texts) - 1
    zero_bucket = value(s, "gateway_inter_token_seconds_bucket", route="r", le="0.001")
    if split == "one-read":  # all written together: every gap is (near) zero
        assert zero_bucket == len(texts) - 1


# -- outcomes of the paths past admission --------------------------------------------------------


async def test_a_fallback_times_the_upstream_headers_of_the_serving_attempt_only() -> None:
    """The primary answers 200 and then fails before any content; the fallback serves. One
    request, one ``gateway_upstream_headers_seconds`` observation (the fallback's), so
    "TTFT minus upstream headers" stays the model's think time."""
    failing, serving = await FakeUpstream().start(), await FakeUpstream().start()
    failing.default = Script(chunks=[(0, chat_error())], headers=SSE)
    serving.default = Script(chunks=[(0, chat_stream("a", "b"))], headers=SSE)
    fallback = {"provider": "openai-chat", "upstream": {"base_url": serving.url, "model": "m-2"}}
    try:
        doc = {"routes": [chat_route("r", failing.url, fallbacks=[fallback])]}
        async with running_gateway(doc) as gw:
            status, body = await stream(gw.url, "/v1/stream/r")
            await wait_for(lambda: not gw.state.sessions)
            s = parse(await scrape(gw.url))
    finally:
        await failing.stop()
        await serving.stop()
    assert status == 200 and b"event: end" in body
    assert value(s, "gateway_upstream_responses_total", route="r", status_class="2xx") == 2
    assert value(s, "gateway_upstream_headers_seconds_count", route="r") == 1
    assert value(s, "gateway_time_to_first_token_seconds_count", route="r") == 1


async def test_a_pool_refusal_is_a_rejection_by_code() -> None:
    """Every deployment rate limited: the 429s are refusals before streaming, counted by code
    like the admission's (the runbook's "look at gateway_rejections_total by code") and not
    timed."""
    fake = await FakeUpstream().start()
    fake.default = Script(
        status=429,
        chunks=[(0, b'{"error": {"message": "slow down"}}')],
        headers={"Content-Type": "application/json", "Retry-After": "60"},
    )
    deployments = [
        {"name": name, "base_url": fake.url, "api_key": "x" * 20, "model": "m"}
        for name in ("east", "west")
    ]
    doc = {"routes": [{"name": "p", "provider": "openai-chat", "upstreams": deployments}]}
    try:
        async with running_gateway(doc) as gw:
            for _ in range(2):
                assert (await stream(gw.url, "/v1/stream/p"))[0] == 429
            await wait_for(lambda: not gw.state.sessions)
            s = parse(await scrape(gw.url))
    finally:
        await fake.stop()
    assert value(s, "gateway_requests_total", route="p", outcome="rejected") == 2
    assert value(s, "gateway_rejections_total", route="p", code="rate_limited") == 2
    assert value(s, "gateway_stream_duration_seconds_count", route="p", outcome="rejected") == 0
    assert value(s, "gateway_active_streams", route="p") == 0


async def test_a_resumable_stream_stopped_by_delete_is_a_client_abort() -> None:
    """``DELETE <route path>/<stream id>`` ends a stream its client asked to end: outcome
    ``client_abort`` with its phase (like a Stop button), never ``rejected`` (which the error
    ratio alert counts as a failure and which says the request was refused before streaming)."""
    fake = await FakeUpstream().start()
    fake.default = Script(chunks=[(0, chat_chunk("x"))], endless=(0.02, chat_chunk("y")))
    doc = {"routes": [chat_route("r", fake.url, resume={"enabled": True})]}
    try:
        async with running_gateway(doc) as gw, aiohttp.ClientSession() as session:
            async with session.post(f"{gw.url}/v1/stream/r", json=HELLO) as resp:
                head = b""
                while b"event: delta" not in head:
                    head += await resp.content.readany()
                stream_id = re.search(rb'"id":"(\w+)"', head)
                assert stream_id is not None
                url = f"{gw.url}/v1/stream/r/{stream_id.group(1).decode()}"
                async with session.delete(url) as stopped:
                    assert stopped.status == 204
                rest = await resp.read()
            await wait_for(lambda: not gw.state.sessions)
            s = parse(await scrape(gw.url))
    finally:
        await fake.stop()
    assert b'"code":"stopped"' in rest
    assert value(s, "gateway_requests_total", route="r", outcome="client_abort") == 1
    assert value(s, "gateway_requests_total", route="r", outcome="rejected") == 0
    assert value(s, "gateway_client_aborts_total", route="r", phase="mid_stream") == 1
