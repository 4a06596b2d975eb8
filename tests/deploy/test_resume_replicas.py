"""Resumable streams across two gateway *processes* sharing a real ``redis-server``, behind a
real nginx (the shipped config with two upstream servers, round-robin).

* A stream started through nginx on one replica, its client cut mid-text, is resumed through
  nginx by the *other* replica (nginx's access log says which replica served what): the text of
  both parts is the fixture byte for byte, ids continuous, one terminal event.
* ``DELETE`` on the replica that does not own a stream closes the owner's upstream within 100 ms.
* The owner dies mid-stream while a follower on the other replica waits: with SIGKILL the
  follower ends with ``error{code: shutdown}`` once the owner's lease lapses (bound:
  ``LEASE_TTL`` + one ``XREAD`` block, 4 s; tested at 6 s); with SIGTERM the owner writes that
  terminal itself once the drain's grace (``server.shutdown_timeout``, 1 s here) is over
  (tested at grace + 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.resume import lease
from tests.deploy.nginx import Nginx, running_nginx
from tests.faults.kit import chat_chunk, chat_route
from tests.limits.redis_server import RedisServer, redis_server
from tests.resume.test_gateway import CUTS, check_whole, cut_after, parse, resume, text_then_tools
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.gateway import GatewayProcess, wait_for

pytestmark = pytest.mark.system

PATH = "/v1/stream/r"
KILL_BOUND = lease.LEASE_TTL + 1.0 + 2.0  # lease + one XREAD block + slack for a loaded machine
GRACE = 1.0
TERM_BOUND = GRACE + 2.0  # the drain's grace, then the owner writes the terminal itself


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@contextlib.contextmanager
def replicas(tmp_path: Path, doc: dict[str, Any]) -> Iterator[list[GatewayProcess]]:
    """Two ``python -m gateway`` processes with the same config."""
    procs: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):
            path = tmp_path / f"gateway-{name}.yaml"
            path.write_text(yaml.safe_dump(doc))
            procs.append(GatewayProcess(path))
        for proc in procs:
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def config(upstream: FakeUpstream, redis: RedisServer) -> dict[str, Any]:
    resume_block = {"enabled": True, "window": "1m", "store": "redis"}
    route = chat_route("r", upstream.url, resume=resume_block, on_client_abort="detach")
    return {"routes": [route], "limits": {"redis_url": redis.url}}


def served_by(nginx: Nginx, method: str, stream_path: str) -> list[str]:
    """The upstream address of each access-log line for ``method stream_path``."""
    pattern = re.compile(rf'"{method} {re.escape(stream_path)}[ ?].*upstream_addr=(\S+)')
    return [m.group(1) for m in map(pattern.search, nginx.access_log().splitlines()) if m]


async def test_resume_through_nginx_on_the_replica_that_does_not_own_the_stream(
    tmp_path: Path, upstream: FakeUpstream, redis: RedisServer
) -> None:
    upstream.push(text_then_tools(gap=0.05))
    with replicas(tmp_path, config(upstream, redis)) as (a, b):
        async with running_nginx(tmp_path / "nginx", a.port, more_gateway_ports=[b.port]) as nx:
            stream_id, got, _ = await cut_after(nx.url + PATH, CUTS["mid_text"])
            await wait_for(lambda: served_by(nx, "POST", PATH) != [], 5, 0.02)
            (owner,) = served_by(nx, "POST", PATH)
            other = {a.port, b.port} - {int(owner.rsplit(":", 1)[1])}
            # round-robin sends the next request to the other replica; ask until it did
            resume_path = f"{PATH}/{stream_id}"
            for attempt in range(4):
                status, raw, _ = await resume(f"{nx.url}{PATH}/{stream_id}", len(got))
                assert status == 200
                check_whole(got + parse(raw))
                seen = attempt + 1
                await wait_for(lambda n=seen: len(served_by(nx, "GET", resume_path)) >= n, 5, 0.02)
                if int(served_by(nx, "GET", resume_path)[-1].rsplit(":", 1)[1]) in other:
                    break
            else:
                pytest.fail(f"no resume reached the other replica: {nx.access_log()}")


async def test_delete_on_the_other_replica_stops_the_upstream_within_100ms(
    tmp_path: Path, upstream: FakeUpstream, redis: RedisServer
) -> None:
    upstream.push(Script(chunks=[(0.0, chat_chunk("go "))], endless=(0.02, chat_chunk("x"))))
    with replicas(tmp_path, config(upstream, redis)) as (a, b):
        stream_id, _, _ = await cut_after(a.url + PATH, CUTS["mid_text"])
        await asyncio.sleep(0.2)  # detached, still streaming into the record
        assert upstream.seen[0].closed_at is None
        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            async with s.delete(f"{b.url}{PATH}/{stream_id}") as r:
                assert r.status == 204
            await wait_for(lambda: upstream.seen[0].closed_at is not None, 1, 0.002)
            assert time.monotonic() - t0 < 0.1
        _, raw, _ = await resume(f"{b.url}{PATH}/{stream_id}", 0)
        frames = parse(raw)
        assert frames[-1][1:] == ("error", frames[-1][2]) and frames[-1][2]["code"] == "stopped"
        assert frames[-1][2]["retryable"] is False


@pytest.mark.parametrize(
    ("sig", "bound"), [(signal.SIGKILL, KILL_BOUND), (signal.SIGTERM, TERM_BOUND)]
)
async def test_the_owner_dies_mid_stream_and_the_follower_ends_with_an_error(
    tmp_path: Path, upstream: FakeUpstream, redis: RedisServer, sig: int, bound: float
) -> None:
    upstream.push(Script(chunks=[(0.0, chat_chunk("go "))], endless=(0.05, chat_chunk("x"))))
    doc = {**config(upstream, redis), "server": {"shutdown_timeout": f"{GRACE}s"}}
    with replicas(tmp_path, doc) as (a, b):
        stream_id, _, _ = await cut_after(a.url + PATH, CUTS["mid_text"])
        async with aiohttp.ClientSession() as s:
            r = await s.get(f"{b.url}{PATH}/{stream_id}", headers={"Last-Event-ID": "0"})
            assert r.status == 200
            await r.content.readuntil(b"\n\n")  # following
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            a.signal(sig)
            raw = await asyncio.wait_for(r.content.read(), bound + 5)
            elapsed = time.monotonic() - t0
        frames = parse(raw)
        terminal = [f for f in frames if f[1] in ("end", "error")]
        assert len(terminal) == 1 and frames[-1] == terminal[0]
        assert terminal[0][2]["code"] == "shutdown" and terminal[0][2]["retryable"] is True
        # SIGKILL: a follower wrote it (the lease lapsed); SIGTERM: the owner did
        written_by_follower = terminal[0][2]["message"] == lease.abandon_message()
        assert written_by_follower == (sig == signal.SIGKILL)
        ids = [f[0] for f in frames]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert elapsed < bound, f"the follower ended {elapsed:.2f} s after the signal"
        # a later resume (the other replica) replays the same record, one terminal
        status, raw, _ = await resume(f"{b.url}{PATH}/{stream_id}", 0)
        assert status == 200
        again = parse(raw)
        assert [f[1] for f in again].count("error") == 1 and again[-1][1] == "error"
