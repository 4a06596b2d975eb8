"""Resumable streams through the running gateway (real app, real sockets, a fake upstream).

A stream with text then two tool calls is cut by its client at several points (after
``created`` only, mid-text, inside a tool call, after the terminal event) and resumed with
every last id the client could hold: the events of both parts, joined, are the whole stream.
Then the abort policies (detach, cancel, drain), ``DELETE``, the window, and bad input.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.reload import reload_config
from tests.adapters.harness import fixture_bytes, fixture_expected
from tests.faults.kit import SSE, chat_chunk, chat_route, chat_stream
from tests.limits.redis_server import RedisServer, redis_server
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import running_gateway, wait_for

PATH = "/v1/stream/r"
BASIC = "openai_chat_basic.sse"
TOOLS = "openai_chat_tool_calls.sse"
TEXT = str(fixture_expected(BASIC)["text"])
CALLS = fixture_expected(TOOLS)["tool_calls"]

Frame = tuple[int, str, dict[str, Any]]


def _blocks(name: str) -> list[bytes]:
    return [b + b"\n\n" for b in fixture_bytes(name).split(b"\n\n") if b.strip()]


def text_then_tools(gap: float = 0.01) -> Script:
    """The basic fixture's text chunks (without its finish), then the tool-call fixture whole."""
    text = [b for b in _blocks(BASIC) if b"[DONE]" not in b and b'"finish_reason":null' in b]
    return Script(chunks=[(gap, b) for b in text + _blocks(TOOLS)], headers=SSE)


def route(upstream: FakeUpstream, **extra: Any) -> dict[str, Any]:
    resume = extra.pop("resume", {"enabled": True, "window": "1m"})
    return chat_route("r", upstream.url, resume=resume, **extra)


def parse(raw: bytes) -> list[Frame]:
    frames: list[Frame] = []
    for block in raw.decode().split("\n\n"):
        lines = [x for x in block.split("\n") if x and not x.startswith(":")]
        if not lines:
            continue
        fields = dict(x.split(": ", 1) for x in lines)
        frames.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return frames


def check_whole(frames: list[Frame]) -> None:
    """Ids 1..N, exactly one terminal event (last), the fixture's text and tool calls."""
    assert [f[0] for f in frames] == list(range(1, len(frames) + 1))
    kinds = [f[1] for f in frames]
    assert kinds[0] == "created"
    assert sum(k in ("end", "error") for k in kinds) == 1 and kinds[-1] == "end"
    assert "".join(d["text"] for _, k, d in frames if k == "delta") == TEXT
    for call in CALLS:
        pieces = [d for _, k, d in frames if k == "tool_call" and d["index"] == call["index"]]
        assert "".join(p.get("arguments", "") for p in pieces) == call["arguments"]


async def cut_after(url: str, stop: Any) -> tuple[str, list[Frame], Any]:
    """POST, read frames until ``stop(frames)``, then drop the connection."""
    frames: list[Frame] = []
    async with aiohttp.ClientSession() as s:
        r = await s.post(url, json={"messages": [{"role": "user", "content": "hi"}]})
        headers = r.headers.copy()
        while not stop(frames):
            block = await r.content.readuntil(b"\n\n")
            if not block:
                break
            frames += parse(block)
        r.close()
    return frames[0][2]["id"], frames, headers


async def resume(url: str, last: int | None = None, **kw: Any) -> tuple[int, bytes, Any]:
    headers = {} if last is None else {"Last-Event-ID": str(last)}
    async with (
        aiohttp.ClientSession() as s,
        s.get(url, headers={**headers, **kw.pop("headers", {})}, **kw) as r,
    ):
        return r.status, await r.read(), r.headers


CUTS = {
    "before_first_token": lambda fs: len(fs) >= 1,
    "mid_text": lambda fs: sum(k == "delta" for _, k, _ in fs) >= 3,
    "inside_tool_call": lambda fs: sum(k == "tool_call" for _, k, _ in fs) >= 2,
    "after_terminal": lambda fs: bool(fs) and fs[-1][1] in ("end", "error"),
}


@pytest.mark.parametrize("cut", list(CUTS))
async def test_cut_anywhere_then_resume_from_every_id_gives_the_whole_stream(
    upstream: FakeUpstream, cut: str
) -> None:
    upstream.push(text_then_tools())
    doc = {"routes": [route(upstream, on_client_abort="detach")]}
    async with running_gateway(doc) as gw:
        stream_id, got, headers = await cut_after(gw.url + PATH, CUTS[cut])
        assert "X-Resume" not in headers
        assert headers["X-Request-Id"] == stream_id
        for last in range(0, len(got) + 1):
            status, raw, rheaders = await resume(f"{gw.url}{PATH}/{stream_id}", last)
            if cut == "after_terminal" and last >= len(got):
                assert status == 204  # the client has everything: EventSource stops here
                continue
            assert status == 200
            assert rheaders["Content-Type"] == headers["Content-Type"]
            assert rheaders["X-Request-Id"] == stream_id
            check_whole(got[:last] + parse(raw))
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 5)
        assert upstream.seen[0].completed  # detach ran the upstream to its end


async def test_cancel_policy_closes_the_upstream_and_ends_the_record_with_error(
    upstream: FakeUpstream,
) -> None:
    upstream.push(text_then_tools(gap=0.05))
    async with running_gateway({"routes": [route(upstream)]}) as gw:
        stream_id, got, _ = await cut_after(gw.url + PATH, CUTS["mid_text"])
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 2)
        assert not upstream.seen[0].completed
        status, raw, _ = await resume(f"{gw.url}{PATH}/{stream_id}", 0)
        frames = parse(raw)
        assert status == 200
        assert [f[0] for f in frames] == list(range(1, len(frames) + 1))
        assert frames[: len(got)] == got  # what the client had, then the record's end
        assert frames[-1][1] == "error" and frames[-1][2]["code"] == "shutdown"
        assert sum(k in ("end", "error") for _, k, _ in frames) == 1


async def test_drain_policy_reads_on_but_records_nothing_more(upstream: FakeUpstream) -> None:
    upstream.push(text_then_tools(gap=0.05))
    doc = {"routes": [route(upstream, on_client_abort="drain", drain_timeout="10s")]}
    async with running_gateway(doc) as gw:
        stream_id, got, _ = await cut_after(gw.url + PATH, CUTS["mid_text"])
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 5)
        assert upstream.seen[0].completed  # drained for billing
        _, raw, _ = await resume(f"{gw.url}{PATH}/{stream_id}", 0)
        frames = parse(raw)
        assert frames[: len(got)] == got
        assert frames[-1][2]["code"] == "shutdown"  # the drain writes to no one
        assert "".join(d["text"] for _, k, d in frames if k == "delta") != TEXT


async def test_delete_stops_a_detached_stream_and_cancels_its_upstream(
    upstream: FakeUpstream,
) -> None:
    upstream.push(Script(chunks=[(0.0, chat_chunk("go "))], endless=(0.02, chat_chunk("x"))))
    doc = {"routes": [route(upstream, on_client_abort="detach")]}
    async with running_gateway(doc) as gw:
        stream_id, _, _ = await cut_after(gw.url + PATH, CUTS["mid_text"])
        await asyncio.sleep(0.1)
        assert upstream.seen[0].closed_at is None  # still running, detached
        assert len(gw.state.sessions) == 1
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        async with aiohttp.ClientSession() as s, s.delete(f"{gw.url}{PATH}/{stream_id}") as r:
            assert r.status == 204
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 1, 0.002)
        assert loop.time() - t0 < 0.1
        _, raw, _ = await resume(f"{gw.url}{PATH}/{stream_id}", 0)
        frames = parse(raw)
        assert frames[-1][1] == "error" and frames[-1][2]["code"] == "stopped"
        await wait_for(lambda: not gw.state.sessions, 1)


def _sample(exposition: str, name: str) -> float:
    return next(float(x.split()[1]) for x in exposition.splitlines() if x.startswith(name + " "))


async def test_metrics_show_the_buffer_and_the_detached_stream_when_scraped(
    upstream: FakeUpstream,
) -> None:
    upstream.push(Script(chunks=[(0.0, chat_chunk("go "))], endless=(0.02, chat_chunk("x"))))
    doc = {"routes": [route(upstream, on_client_abort="detach")]}
    async with running_gateway(doc) as gw, aiohttp.ClientSession() as s:

        async def scrape() -> str:
            async with s.get(gw.url + "/metrics") as r:
                return await r.text()

        before = _sample(await scrape(), "gateway_resume_buffered_bytes")
        stream_id, _, _ = await cut_after(gw.url + PATH, CUTS["mid_text"])
        await asyncio.sleep(0.1)  # detached: a few more frames recorded, no refresh tick yet
        text = await scrape()
        assert _sample(text, "gateway_resume_detached_streams") == 1
        assert _sample(text, "gateway_resume_buffered_bytes") > before
        async with s.delete(f"{gw.url}{PATH}/{stream_id}") as r:
            assert r.status == 204
        await wait_for(lambda: not gw.state.sessions, 1)
        assert _sample(await scrape(), "gateway_resume_detached_streams") == 0


async def test_delete_stops_an_attached_stream_for_its_client_too(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0.0, chat_chunk("go "))], endless=(0.02, chat_chunk("x"))))
    async with running_gateway({"routes": [route(upstream)]}) as gw, aiohttp.ClientSession() as s:
        r = await s.post(gw.url + PATH, json={"messages": [{"role": "user", "content": "hi"}]})
        stream_id = r.headers["X-Request-Id"]
        await r.content.readuntil(b"go ")
        async with s.delete(f"{gw.url}{PATH}/{stream_id}") as d:
            assert d.status == 204
        rest = (await r.read()).split(b"\n\n", 1)[1]  # after the frame cut by readuntil
        frames = parse(rest)
        assert frames[-1][1] == "error" and frames[-1][2]["code"] == "stopped"
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 1)


async def test_the_window_ends_a_detached_upstream(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0.0, chat_chunk("go "))], endless=(0.02, chat_chunk("x"))))
    resume_block = {"enabled": True, "window": "300ms"}
    doc = {"routes": [route(upstream, on_client_abort="detach", resume=resume_block)]}
    async with running_gateway(doc) as gw:
        stream_id, _, _ = await cut_after(gw.url + PATH, CUTS["mid_text"])
        await wait_for(lambda: upstream.seen[0].closed_at is not None, 2)
        _, raw, _ = await resume(f"{gw.url}{PATH}/{stream_id}", 0)
        assert parse(raw)[-1][2]["code"] == "limit_exceeded"


async def test_non_tokens_format_says_unavailable(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0.0, chat_stream("a", "b"))], headers=SSE))
    async with running_gateway({"routes": [route(upstream)]}) as gw, aiohttp.ClientSession() as s:
        body = {"messages": [{"role": "user", "content": "hi"}]}
        async with s.post(gw.url + PATH + "?format=ndjson", json=body) as r:
            assert r.headers["X-Resume"] == "unavailable"
            await r.read()
        async with s.get(gw.url + "/v1/routes") as r:
            assert (await r.json())["routes"][0]["resume"] is True


BAD = [
    ("0" * 32, {}, 404, "not_found"),  # well formed, unknown
    ("../../etc", {}, 404, "not_found"),
    ("x" * 300, {}, 404, "not_found"),
]


async def test_bad_input_gets_documented_statuses(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0.0, chat_stream("a", "b"))], headers=SSE))
    async with running_gateway({"routes": [route(upstream)]}) as gw:
        stream_id, got, _ = await cut_after(gw.url + PATH, CUTS["after_terminal"])
        base = f"{gw.url}{PATH}/"
        for sid, hdrs, status, code in BAD:
            st, raw, _ = await resume(base + sid, headers=hdrs)
            assert (st, json.loads(raw)["error"]["code"]) == (status, code)
        for last, status in (("abc", 400), ("-1", 400), (str(len(got) + 5), 400)):
            st, raw, _ = await resume(base + stream_id, headers={"Last-Event-ID": last})
            assert st == status and json.loads(raw)["error"]["code"] == "invalid_request"
            assert stream_id not in raw.decode()
        async with aiohttp.ClientSession() as s, s.put(base + stream_id) as r:
            assert r.status == 405


async def test_another_key_may_not_resume_or_stop(upstream: FakeUpstream) -> None:
    upstream.push(Script(chunks=[(0.0, chat_stream("a", "b"))], headers=SSE))
    keys = [{"name": "a", "key": "key-a-0123456789"}, {"name": "b", "key": "key-b-0123456789"}]
    doc = {"routes": [route(upstream)], "auth": {"keys": keys}}
    async with running_gateway(doc) as gw, aiohttp.ClientSession() as s:
        auth_a = {"Authorization": "Bearer key-a-0123456789"}
        auth_b = {"Authorization": "Bearer key-b-0123456789"}
        body = {"messages": [{"role": "user", "content": "hi"}]}
        async with s.post(gw.url + PATH, json=body, headers=auth_a) as r:
            stream_id = r.headers["X-Request-Id"]
            await r.read()
        url = f"{gw.url}{PATH}/{stream_id}"
        for method in ("GET", "DELETE"):
            async with s.request(method, url, headers=auth_b) as r:
                assert r.status == 403
                assert "key-a" not in await r.text()
            async with s.request(method, url) as r:
                assert r.status == 401
        async with s.get(url, headers=auth_a) as r:
            assert r.status == 200
            check_text = parse(await r.read())
            assert "".join(d["text"] for _, k, d in check_text if k == "delta") == "ab"


async def test_a_stream_is_resumed_and_stopped_only_through_its_own_route(
    upstream: FakeUpstream,
) -> None:
    """A stream started on route ``r`` answered ``GET`` and ``DELETE`` through any other route
    with resume on: a key that a reload took off ``r`` could still read and stop its ``r``
    streams there."""
    upstream.push(Script(chunks=[(0.0, chat_stream("a", "b"))], headers=SSE))
    other = chat_route("other", upstream.url, resume={"enabled": True, "window": "1m"})
    async with running_gateway({"routes": [route(upstream), other]}) as gw:
        async with aiohttp.ClientSession() as s:
            body = {"messages": [{"role": "user", "content": "hi"}]}
            async with s.post(gw.url + PATH, json=body) as r:
                stream_id = r.headers["X-Request-Id"]
                await r.read()
            elsewhere = f"{gw.url}/v1/stream/other/{stream_id}"
            for method in ("GET", "DELETE"):
                async with s.request(method, elsewhere) as r:
                    assert r.status == 403, method
                    assert (await r.json())["error"]["code"] == "forbidden"
            async with s.get(f"{gw.url}{PATH}/{stream_id}") as r:
                assert r.status == 200
                assert [k for _, k, _ in parse(await r.read())][-1] == "end"


async def test_each_resume_and_stop_writes_one_log_line(
    upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """Operators saw a resume only as ``gateway_resumes_total``: one ``resume`` line per
    ``GET`` or ``DELETE`` says which stream, how it went, how many events it sent and for how
    long; an id the gateway could not have made is not copied into the log."""
    caplog.set_level(logging.INFO, logger="gateway")
    upstream.push(Script(chunks=[(0.0, chat_stream("a", "b"))], headers=SSE))
    async with running_gateway({"routes": [route(upstream)]}) as gw:
        async with aiohttp.ClientSession() as s:
            body = {"messages": [{"role": "user", "content": "hi"}]}
            async with s.post(gw.url + PATH, json=body) as r:
                stream_id = r.headers["X-Request-Id"]
                sent = parse(await r.read())
            url = f"{gw.url}{PATH}/{stream_id}"
            async with s.get(url, headers={"Last-Event-ID": "1"}) as r:
                assert len(parse(await r.read())) == len(sent) - 1
            async with s.get(url, headers={"Last-Event-ID": str(sent[-1][0])}) as r:
                assert r.status == 204
            async with s.delete(url) as r:
                assert r.status == 204
            async with s.get(f"{gw.url}{PATH}/{'x' * 300}") as r:
                assert r.status == 404
    lines = [r.fields for r in caplog.records if r.getMessage() == "resume"]  # type: ignore[attr-defined]
    assert [(x["method"], x["outcome"], x["events"]) for x in lines] == [
        ("GET", "followed", len(sent) - 1),
        ("GET", "ended", 0),
        ("DELETE", "stopped", 0),
        ("GET", "not_found", 0),
    ]
    assert [x["id"] for x in lines] == [stream_id] * 3 + [None]
    assert all(x["route"] == "r" and x["app"] is None and x["duration_ms"] >= 0 for x in lines)


async def test_redis_store_resume_on_another_replica(
    upstream: FakeUpstream, redis: RedisServer
) -> None:
    """Two gateways (replicas) share one real redis-server: start on one, resume on the other,
    and DELETE through the other stops the owner's detached upstream."""
    resume_block = {"enabled": True, "window": "1m", "store": "redis"}
    upstream.push(text_then_tools(gap=0.03))
    doc = {
        "routes": [route(upstream, on_client_abort="detach", resume=resume_block)],
        "limits": {"redis_url": redis.url},
    }
    async with running_gateway(doc) as a, running_gateway(doc) as b:
        stream_id, got, _ = await cut_after(a.url + PATH, CUTS["mid_text"])
        status, raw, _ = await resume(f"{b.url}{PATH}/{stream_id}", len(got))
        assert status == 200
        check_whole(got + parse(raw))
        upstream.push(Script(chunks=[(0.0, chat_chunk("go "))], endless=(0.02, chat_chunk("x"))))
        stream_id, _, _ = await cut_after(a.url + PATH, CUTS["mid_text"])
        async with aiohttp.ClientSession() as s, s.delete(f"{b.url}{PATH}/{stream_id}") as r:
            assert r.status == 204
        await wait_for(lambda: upstream.seen[1].closed_at is not None, 1, 0.002)
        _, raw, _ = await resume(f"{b.url}{PATH}/{stream_id}", 0)
        assert parse(raw)[-1][2]["code"] == "stopped"


async def test_a_reload_to_another_redis_records_new_streams_there(
    upstream: FakeUpstream, redis: RedisServer, tmp_path: Path
) -> None:
    """The resume stores were kept by kind only: after a reload that pointed
    ``limits.redis_url`` at another server (limits and pools moved there), new streams were
    still recorded on the old one."""
    from redis.asyncio import Redis

    def doc(url: str) -> dict[str, Any]:
        resume_block = {"enabled": True, "window": "1m", "store": "redis"}
        return {"routes": [route(upstream, resume=resume_block)], "limits": {"redis_url": url}}

    async def keys(url: str) -> list[bytes]:
        client = Redis.from_url(url)
        try:
            return list(await client.keys("*"))
        finally:
            await client.aclose()

    with redis_server(tmp_path) as other:
        async with running_gateway(doc(redis.url)) as gw, aiohttp.ClientSession() as s:
            path = tmp_path / "gateway.yaml"
            path.write_text(yaml.safe_dump(doc(other.url)))
            assert reload_config(gw.app, str(path))
            old_keys = set(await keys(redis.url))
            upstream.push(Script(chunks=[(0.0, chat_stream("a", "b"))], headers=SSE))
            body = {"messages": [{"role": "user", "content": "hi"}]}
            async with s.post(gw.url + PATH, json=body) as r:
                stream_id = r.headers["X-Request-Id"]
                assert parse(await r.read())[-1][1] == "end"
            assert any(stream_id.encode() in k for k in await keys(other.url))
            assert set(await keys(redis.url)) == old_keys
            async with s.get(f"{gw.url}{PATH}/{stream_id}") as r:
                assert [k for _, k, _ in parse(await r.read())][-1] == "end"


async def test_an_expired_stream_frees_its_buffer_without_a_request_to_look_it_up(
    upstream: FakeUpstream,
) -> None:
    """After ``window`` a finished stream's bytes leave ``gateway_resume_buffered_bytes`` even
    when no request comes to the resume store (they stayed held, and counted, until a
    ``POST``, ``GET`` or ``DELETE`` of a resumable route swept them)."""
    upstream.push(Script(chunks=[(0.0, chat_stream("a", "b"))], headers=SSE))
    resume_block = {"enabled": True, "window": "200ms"}
    doc = {"routes": [route(upstream, resume=resume_block)]}
    async with running_gateway(doc) as gw, aiohttp.ClientSession() as s:

        async def buffered() -> float:
            async with s.get(gw.url + "/metrics") as r:
                return _sample(await r.text(), "gateway_resume_buffered_bytes")

        body = {"messages": [{"role": "user", "content": "hi"}]}
        async with s.post(gw.url + PATH, json=body) as r:
            stream_id = r.headers["X-Request-Id"]
            assert parse(await r.read())[-1][1] == "end"
        assert await buffered() > 0
        for _ in range(100):  # swept at most once a second: within 1.2 s
            if await buffered() == 0:
                break
            await asyncio.sleep(0.05)
        assert await buffered() == 0
        status, _, _ = await resume(f"{gw.url}{PATH}/{stream_id}")
        assert status == 404
