"""Where a proxy's added time to first token goes: the request leg and the token leg.

``python -m bench`` reports the added TTFT (a proxy's time to first token minus ``direct``'s);
this splits it. Each stream carries a tag in its bench spec; the fake upstream records, per
tag, when the request arrived and when it wrote the first token (``/_marks``, on
``time.monotonic()``, the same system-wide clock as the client's). So, per stream:

* request leg = upstream saw the request - client sent it (the proxy's work before it forwards
  the request: parse, admission, the upstream request; plus a hop);
* token leg = client saw the first token - upstream wrote it (read, translate, write; plus a
  hop);

and their sum is the time to first token minus the model's own delay. ``direct`` measures the
hops alone (the client talks to the upstream itself), so a proxy's *added* legs are its legs
minus ``direct``'s. Run at 1 stream at a time and at 64 concurrent (as ``ttft-1`` and
``ttft-64`` in ``python -m bench``), peers measured one after the other, ``--rounds`` times in
alternating order; each figure is the median over rounds of each round's p50 / p99.

Run: ``python -m bench.ttft [--peers direct,nginx,contract,gateway] [--rounds 3]``
(``contract``: the contract floor of :mod:`bench.floor`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import loadgen
from bench.floor import start_floor
from bench.peers import (
    Peer,
    become_load_generator,
    start_direct,
    start_gateway,
    start_nginx,
    start_upstream,
)
from bench.scenarios import HOST, quantile

LAUNCHERS: dict[str, Callable[[int], Peer]] = {
    "direct": start_direct,
    "nginx": start_nginx,
    "floor": start_floor,
    "contract": lambda port: start_floor(port, contract=True),
    "gateway": start_gateway,
}


@dataclass(frozen=True)
class Shape:
    """A run: ``concurrency`` clients for ``seconds``, streams of ``tokens`` tokens, the first
    after ``first_ms`` and the others ``gap_ms`` apart; starts spread over ``stagger`` s."""

    name: str
    concurrency: int
    seconds: float
    tokens: int
    first_ms: int
    gap_ms: int
    stagger: float


SHAPES = (
    Shape("1 stream", 1, 5.0, 5, 10, 10, 0.0),
    Shape("64 concurrent", 64, 5.0, 40, 10, 25, 1.0),
)


@dataclass(frozen=True)
class Legs:
    """One stream's timeline (seconds, one clock): client sent, upstream got the request,
    upstream wrote the first token, client read it."""

    sent: float
    arrived: float
    written: float
    seen: float

    @property
    def request(self) -> float:
        return self.arrived - self.sent

    @property
    def token(self) -> float:
        return self.seen - self.written


def summarise(legs: list[Legs]) -> dict[str, float]:
    """p50 and p99 (ms) of each leg and of their sum over ``legs``."""
    out: dict[str, float] = {"streams": len(legs)}
    for name, values in (
        ("request", [x.request for x in legs]),
        ("token", [x.token for x in legs]),
        ("both", [x.request + x.token for x in legs]),
    ):
        for q in (0.5, 0.99):
            value = quantile(values, q)
            out[f"{name}_p{round(q * 100)}_ms"] = round((value or 0.0) * 1000, 3)
    return out


async def run_shape(peer: Peer, shape: Shape, first_tag: int, control_port: int) -> list[Legs]:
    """Streams of ``shape`` through ``peer`` for ``shape.seconds``, each with its own tag; the
    legs of every stream that ended cleanly (``control_port``: the fake upstream's)."""
    tally = loadgen.Tally()
    sent: dict[int, tuple[float, float]] = {}
    stop_at = time.monotonic() + shape.stagger + shape.seconds
    tags = iter(range(first_tag, 1 << 62))

    async def worker(i: int) -> None:
        await asyncio.sleep(i * shape.stagger / shape.concurrency)
        conn = await loadgen.connect(HOST, peer.port, tally, timing=False)
        try:
            while time.monotonic() < stop_at:
                tag = next(tags)
                spec = f"bench:{shape.tokens}:{shape.first_ms}:{shape.gap_ms}:flow:{tag}"
                if await conn.send(peer.request("chat", spec)):
                    sent[tag] = (conn.t_sent, conn.t_first)
                elif conn.lost.done():
                    return
        finally:
            if conn.transport is not None:
                conn.transport.close()

    await asyncio.gather(*(worker(i) for i in range(shape.concurrency)))
    marks = (await loadgen.get_json(HOST, control_port, "/_marks"))["marks"]
    legs = []
    for tag, (t_sent, t_first) in sent.items():
        mark = marks.get(str(tag))
        if mark is not None and t_first:
            legs.append(Legs(t_sent, mark[0], mark[1], t_first))
    return legs


async def measure(names: list[str], rounds: int) -> dict[str, Any]:
    """Per shape and peer: the median over ``rounds`` of each round's figures, and the added
    legs (the peer's minus ``direct``'s in the same round) when ``direct`` ran."""
    upstream, upstream_port = start_upstream()
    peers = [LAUNCHERS[name](upstream_port) for name in names]
    rows: dict[str, dict[str, list[dict[str, float]]]] = {
        shape.name: {p.name: [] for p in peers} for shape in SHAPES
    }
    tag = 0
    try:
        for peer in peers:  # warm up: first connections, imports, caches
            await run_shape(peer, Shape("warm-up", 4, 0.5, 5, 0, 1, 0.0), tag, upstream_port)
            tag += 1 << 20
        for r in range(rounds):
            for shape in SHAPES:
                for peer in peers if r % 2 == 0 else list(reversed(peers)):
                    got = summarise(await run_shape(peer, shape, tag, upstream_port))
                    tag += 1 << 20
                    rows[shape.name][peer.name].append(got)
                    print(json.dumps({"shape": shape.name, "round": r, "peer": peer.name, **got}))
    finally:
        for peer in peers:
            peer.stop()
        upstream.terminate()
    return {shape: _medians(by_peer) for shape, by_peer in rows.items()}


def _medians(by_peer: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, got in by_peer.items():
        out[name] = {key: statistics.median(row[key] for row in got) for key in got[0]}
        if "direct" in by_peer and name != "direct":
            for key in got[0]:
                if key.endswith("_ms"):
                    pairs = zip(got, by_peer["direct"], strict=True)
                    added = [row[key] - base[key] for row, base in pairs]
                    out[name][f"added_{key}"] = round(statistics.median(added), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ttft", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--peers", default="direct,nginx,contract,gateway")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    become_load_generator()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    medians = asyncio.run(measure(args.peers.split(","), args.rounds))
    print(json.dumps({"started": started, "median": medians}, indent=1))


if __name__ == "__main__":
    main()
