"""The floor: the cheapest translating proxy a CPython process can be, to measure beside nginx.

    python -m bench.floor [--scenarios chat-1,chat-1-rate,chat-paced,chat-b2b] [--rounds 3]
                          [--seconds 5]

Issue 17 asks for the gateway's CPU per request within 3x of nginx's, or for the gap to be
explained by where the time goes and why it cannot go lower in Python. This module measures the
second half directly: :class:`FloorServer` does, for one ``POST``, only the work no translating
proxy can skip, in the fastest way this machine's Python has (uvloop, httptools, orjson, no
framework, no coroutine, no task):

* parse the request head and body (httptools) and the JSON body (orjson);
* build the upstream request from it (orjson) and write it on a pooled keep-alive connection;
* parse the upstream response (httptools), split its SSE events, parse each one's JSON;
* encode the token protocol's events (``created``, ``delta``, ``usage``, ``end``) and write them
  to the client as HTTP chunks.

Nothing else: no validation beyond reading ``messages``, no admission, limits, failover,
deadlines, heartbeats, metrics, log line or error handling (a malformed anything drops the
connection). Every one of those is something the gateway does per request; the floor says how
much of the gateway's cost is Python itself and how much is the gateway's features.

A second peer, the *contract floor* (``bench/contract_floor.py``), is this floor plus only what
``docs/contract.md`` requires of every stream (the request's checks and JSON errors, the
protocol's headers and events, the timeouts and heartbeat, abort handling, the core Prometheus
series, a log line), each in its cheapest form: what any conforming gateway must spend.

The floor, the contract floor, nginx and the gateway run pinned to the proxy core at the same
time, and each scenario's closed loop (``bench/scenarios.py``: ``chat-1`` is 1-token streams, so
µs per event is µs per request there; ``chat-1-rate`` the same at one rate for every peer) goes
to each in turn from the other core, for ``--rounds``
rounds; each round gives every peer's CPU µs per event (from ``/proc``) and the ratios
(:data:`RATIOS`). Neither floor is a product: they are bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httptools
import orjson

from bench.fake_upstream import install_uvloop, raise_fd_limit
from bench.peers import (
    LOAD_CORE,
    Peer,
    _spawn,
    _wait_ready,
    free_port,
    start_gateway,
    start_nginx,
)
from bench.scenarios import LOADS, run_load

UPSTREAM_PATH = b"/v1/chat/completions"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


class Upstream(asyncio.Protocol):
    """One keep-alive upstream connection, feeding one client stream at a time."""

    def __init__(self, server: FloorServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def begin(self, client: Client) -> None:
        self.client = client

    def on_headers_complete(self) -> None:
        client = self.client
        assert client is not None
        created = client.event(b"created", {"id": client.rid, "route": "chat"})
        client.write(created, HEAD)

    def on_body(self, body: bytes) -> None:
        client = self.client
        assert client is not None
        buf = self.pending + body if self.pending else body
        *events, self.pending = buf.split(b"\n\n")
        out = []
        for event in events:
            data = event[6:]  # b"data: "
            if data == b"[DONE]":
                continue
            doc = orjson.loads(data)
            usage = doc.get("usage")
            if usage:
                out.append(client.event(b"usage", usage))
            for choice in doc["choices"]:
                text = choice["delta"].get("content")
                if text:
                    out.append(client.event(b"delta", {"text": text}))
        if out:
            client.write(b"".join(out))

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        assert client is not None
        client.finish(client.event(b"end", {"reason": "stop"}))
        self.parser = httptools.HttpResponseParser(self)
        self.server.idle.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.client.abort()


class Client(asyncio.Protocol):
    """One client connection: request in, the token stream out."""

    def __init__(self, server: FloorServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.n = 0
        self.rid = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        request = orjson.loads(b"".join(self.body))
        self.body.clear()
        self.start(request["messages"])

    def start(self, messages: list[Any]) -> None:
        """Send the upstream request for ``messages``."""
        self.n = 0
        self.rid = os.urandom(8).hex()
        upstream_body = orjson.dumps(
            {
                "model": "bench",
                "messages": messages,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        self.server.send_upstream(
            self,
            b"POST %s HTTP/1.1\r\nHost: upstream\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer sk-bench\r\nContent-Length: %d\r\n\r\n%s"
            % (UPSTREAM_PATH, len(upstream_body), upstream_body),
        )

    def event(self, name: bytes, doc: dict[str, Any]) -> bytes:
        self.n += 1
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.n, name, orjson.dumps(doc))

    def write(self, data: bytes, head: bytes = b"") -> None:
        if self.transport is not None:
            self.transport.write(b"%b%x\r\n%b\r\n" % (head, len(data), data))

    def finish(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class FloorServer:
    """The listening side and the upstream pool."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.idle: list[Upstream] = []

    def upstream(self) -> Upstream:
        return Upstream(self)

    def client(self) -> Client:
        return Client(self)

    def send_upstream(self, client: Client, request: bytes) -> None:
        if self.idle:
            conn = self.idle.pop()
            conn.begin(client)
            assert conn.transport is not None
            conn.transport.write(request)
            return
        asyncio.get_running_loop().create_task(self._connect(client, request))

    async def _connect(self, client: Client, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(self.upstream, "127.0.0.1", self.upstream_port)
        conn.begin(client)
        assert conn.transport is not None
        conn.transport.write(request)


async def serve(port: int, upstream_port: int, *, contract: bool = False) -> None:
    """Serve the floor (``contract``: the contract floor, ``bench/contract_floor.py``)."""
    if contract:
        from bench.contract_floor import ContractServer

        server: FloorServer = ContractServer(upstream_port)
    else:
        server = FloorServer(upstream_port)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server.client, "127.0.0.1", port, backlog=4096)
    print(f"ready {port}", flush=True)
    async with listener:
        await listener.serve_forever()


def start_floor(upstream_port: int, *, contract: bool = False) -> Peer:
    """The floor proxy (``contract``: the contract floor) as a bench peer, pinned like the
    others."""
    name = "contract" if contract else "floor"
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    cmd = [sys.executable, "-m", "bench.floor", "--serve", str(port)]
    cmd += ["--upstream", str(upstream_port), *(["--contract"] if contract else [])]
    proc = _spawn(name, cmd, workdir, {"PYTHONPATH": str(Path(__file__).resolve().parents[1])})

    def body(spec: str) -> bytes:
        return json.dumps({"messages": [{"role": "user", "content": spec}]}).encode()

    peer = Peer(name, port, proc, workdir, {"chat": "/v1/stream/chat"}, {"chat": body})
    _wait_ready(peer, None, 30)
    return peer


RATIOS = (
    ("floor", "nginx"),
    ("contract", "nginx"),
    ("gateway", "nginx"),
    ("contract", "floor"),
    ("gateway", "contract"),
)
"""The ratios reported per round: each peer against nginx, and each step up from the floor."""


async def measure(names: list[str], rounds: int, seconds: float) -> dict[str, Any]:
    """Per scenario: the median over ``rounds`` of each peer's CPU µs per event and per stream,
    and of the per-round ratios."""
    from bench.peers import start_upstream

    upstream, upstream_port = start_upstream()
    loads = [dataclasses.replace(x, duration=seconds) for x in LOADS if x.name in names]
    peers = [
        start_floor(upstream_port),
        start_floor(upstream_port, contract=True),
        start_nginx(upstream_port),
        start_gateway(upstream_port),
    ]
    rows: dict[str, list[dict[str, float]]] = {load.name: [] for load in loads}
    try:
        for r in range(rounds):
            for load in loads:
                row: dict[str, float] = {}
                for peer in peers if r % 2 == 0 else list(reversed(peers)):
                    result = await run_load(peer, load)
                    row[peer.name] = result["cpu_us_per_event"]
                for over, under in RATIOS:
                    row[f"{over}/{under}"] = round(row[over] / row[under], 2)
                print(json.dumps({"scenario": load.name, "round": r, **row}), flush=True)
                rows[load.name].append(row)
    finally:
        for peer in peers:
            peer.stop()
        upstream.terminate()
    return {
        name: {key: statistics.median(row[key] for row in got) for key in got[0]}
        for name, got in rows.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--scenarios", default="chat-1,chat-1-rate,chat-paced,chat-b2b")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--contract", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    install_uvloop()
    raise_fd_limit()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.upstream, contract=args.contract))
        return
    os.sched_setaffinity(0, {LOAD_CORE})
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    medians = asyncio.run(measure(args.scenarios.split(","), args.rounds, args.seconds))
    print(json.dumps({"started": started, "median": medians}, indent=1))


if __name__ == "__main__":
    main()
