"""Instructions per request: a proxy's own work, counted exactly, whatever the host is doing.

    python -m bench.instructions [--peers nginx,floor,contract,gateway] [--requests 2000]
                                 [--scenario chat-1] [--base ../old-checkout] [--top 12]
                                 [--keep DIR]

CPU time per request on this shared VM swings by a third within minutes (docs/performance.md,
"Six full runs"), and it swings more for the Python peers than for nginx, so even a ratio taken
in the same minutes moves with the host. The number of instructions a process executes does
not: valgrind's callgrind counts them, the same for the same work whatever else the machine
runs. This module runs each peer under callgrind, one at a time against the fake upstream, and
counts what its processes execute in user space for a fixed number of requests:

1. start the peer under ``valgrind --tool=callgrind`` (every process of it);
2. warm it up with ``--warmup`` requests (imports, caches, pools, the first allocations);
3. zero the counters (``callgrind_control -z``), send ``--requests`` requests from
   ``--concurrency`` keep-alive connections, each its next request as soon as the last one
   ended, then dump the counters (``callgrind_control -d``);
4. instructions per request = the dump's total over the requests.

It counts user-space instructions only: the kernel's work for the socket calls is not in it
(``bench.syscalls`` measures that share; it is about nginx's for every peer). An instruction is
not a fixed time (a cache miss costs hundreds), so this is the *work* a request costs, the
measure to compare two versions of the code with (``--base PATH``: the gateway from another
checkout, as ``bench.ab``): a change of 0.5 % shows here, where ``bench.ab`` needs 2 %. Under
callgrind a peer runs about fifty times slower, so the load saturates it and every peer is
counted at saturation, as in ``chat-1``.

Also printed per peer: the C functions with the most instructions of their own (callgrind's
``Ir`` self cost), where in CPython the interpreter's own work shows as ``_PyEval_...`` and the
object work as allocation, dict and attribute functions; and the split of its own costs by the
file the code is in (``by_object_pct``: the interpreter, the event loop, the parsers, JSON, the
compiled core, the C library). ``--keep DIR`` keeps each peer's dump for ``callgrind_annotate``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import ablate
from bench.floor import start_floor
from bench.loadgen import Tally, connect
from bench.peers import (
    Peer,
    become_load_generator,
    start_gateway,
    start_gateway_sources,
    start_gateway_variant,
    start_nginx,
    start_upstream,
    wrapped,
)
from bench.scenarios import LOADS, Load


def _worker_as_root(conf: str) -> str:
    """nginx's worker keeps the master's user: callgrind_control cannot reach a worker that
    switched to ``nobody`` (its vgdb files are not the controller's)."""
    return "user root;\n" + conf


STARTERS: dict[str, Callable[[int], Peer]] = {
    "nginx": lambda port: start_nginx(port, edit=_worker_as_root),
    "floor": start_floor,
    "contract": lambda port: start_floor(port, contract=True),
    "gateway": start_gateway,
    "sources": start_gateway_sources,
}
"""The peers this module counts, by name (each takes the fake upstream's port)."""

SLOWDOWN = 40.0
"""How much longer a peer takes to start under callgrind than alone."""

SUMMARY = re.compile(rb"^summary:\s+(\d+)", re.MULTILINE)


PACED_GAP_MS = 20
"""The gap between a paced scenario's tokens under callgrind: a peer runs about fifty times
slower there, and at the scenario's own 5 ms its reads would hold several tokens each; at 20 ms
(with ``--concurrency 1``) every token is still its own read, as in ``chat-paced``."""

SCENARIOS = ("chat-1", "chat-1-rate", "chat-paced")


def counted_load(scenario: str) -> Load:
    """The load of ``scenario`` as this module sends it (a paced one at :data:`PACED_GAP_MS`)."""
    load = next(x for x in LOADS if x.name == scenario)
    return dataclasses.replace(load, gap_ms=PACED_GAP_MS) if load.gap_ms else load


def callgrind_prefix(out_dir: Path) -> list[str]:
    """The command a peer runs under: callgrind on every process, one output file per process
    and dump (``cg.<pid>``, ``cg.<pid>.<n>``)."""
    binary = shutil.which("valgrind")
    if binary is None:
        raise SystemExit("bench.instructions needs valgrind (apt-get install valgrind)")
    return [
        binary,
        "--tool=callgrind",
        "--trace-children=yes",
        f"--callgrind-out-file={out_dir}/cg.%p",
        "--quiet",
    ]


def total_instructions(dump: bytes) -> int:
    """The ``summary:`` line of a callgrind output file: instructions counted in that dump."""
    found = SUMMARY.search(dump)
    if found is None:
        raise ValueError("not a callgrind output file (no summary line)")
    return int(found.group(1))


def top_functions(dump: bytes, n: int) -> list[tuple[float, str]]:
    """The ``n`` functions with the largest self cost in a callgrind output file: (share of its
    total in %, function name), largest first."""
    costs = self_costs(dump.decode(errors="replace"))
    total = sum(costs.values()) or 1
    ranked = sorted(costs.items(), key=lambda item: -item[1])[:n]
    return [(round(100 * cost / total, 2), name) for name, cost in ranked]


def self_costs(text: str) -> dict[str, int]:
    """Each function's own instructions (its calls' costs left out) in callgrind's format.

    ``fn=`` starts a function's lines and ``cfn=`` names a callee (either may define a
    compressed name, ``(id) name``, used later as ``(id)``); a cost line (position, then ``Ir``)
    right after ``calls=`` is the call's inclusive cost, so not the function's own. Parsed here
    rather than by ``callgrind_annotate``, which shows inclusive costs for a mid-run dump."""
    costs: dict[str, int] = {}
    for _, function, cost in _own_costs(text):
        costs[function] = costs.get(function, 0) + cost
    return costs


def object_costs(text: str) -> dict[str, int]:
    """The self costs summed by the file each function's code is in (``ob=``, shown by its
    name without the directory): how a request's instructions split between the interpreter
    (``libpython``, or the ``python`` executable when it is linked statically), the event loop
    (uvloop's extension module, libuv inside it), the parsers and JSON (httptools, orjson), the
    compiled core (``gateway/_native``'s module) and the C library."""
    costs: dict[str, int] = {}
    for obj, _, cost in _own_costs(text):
        name = obj.rpartition("/")[2]
        costs[name] = costs.get(name, 0) + cost
    return costs


def _own_costs(text: str) -> Iterator[tuple[str, str, int]]:
    """(object file, function, own instructions) for each cost line of a dump that is not a
    call's inclusive cost. Objects and functions have a compression table each (``ob=`` and
    ``cob=`` share one, ``fn=`` and ``cfn=`` the other)."""
    functions: dict[str, str] = {}
    objects: dict[str, str] = {}
    obj = "?"
    current: str | None = None
    after_call = False
    for line in text.splitlines():
        if line.startswith(("fn=", "cfn=")):
            key, _, rest = line.partition("=")
            name = _name(rest, functions)
            if key == "fn":
                current = name
        elif line.startswith(("ob=", "cob=")):
            key, _, rest = line.partition("=")
            name = _name(rest, objects)
            if key == "ob":
                obj = name
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in ("+", "-", "*"):
            if after_call:
                after_call = False
                continue
            fields = line.split()
            if current is not None and len(fields) >= 2:
                yield obj, current, int(fields[1])


def _name(field: str, names: dict[str, str]) -> str:
    """A possibly compressed name: ``(id) name`` defines ``id``, ``(id)`` refers to it."""
    if field.startswith("("):
        ident, _, name = field.partition(")")
        name = name.strip()
        if name:
            names[ident] = name
            return name
        return names.get(ident, ident + ")")
    return field


async def fixed_load(peer: Peer, request: bytes, requests: int, concurrency: int) -> Tally:
    """Send exactly ``requests`` requests over ``concurrency`` keep-alive connections, each its
    next one as soon as the last ended; returns the client's tally."""
    tally = Tally()
    left = [requests]

    async def worker() -> None:
        conn = await connect(peer.host, peer.port, tally)
        while left[0] > 0:
            left[0] -= 1
            if await conn.send(request):
                tally.streams += 1
            else:
                tally.failed += 1
                conn = await connect(peer.host, peer.port, tally)
        assert conn.transport is not None
        conn.transport.close()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return tally


def serving_processes(tree: list[int]) -> list[int]:
    """The processes of a peer's tree that have no child in it: the ones that serve (nginx's
    worker, not its master, which sleeps in ``sigsuspend`` where callgrind cannot be asked
    anything; a one-process peer itself)."""
    parents = set()
    for pid in tree:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        parents.add(int(stat[stat.rfind(b")") + 2 :].split()[1]))
    return [pid for pid in tree if pid not in parents]


def _control(action: str, pids: list[int]) -> None:
    subprocess.run(
        ["callgrind_control", action, *map(str, pids)],
        capture_output=True,
        check=True,
        timeout=120,
    )


def count_peer(
    start: Callable[[int], Peer],
    upstream_port: int,
    *,
    requests: int,
    warmup: int,
    concurrency: int,
    scenario: str,
    top: int,
    keep: Path | None = None,
) -> dict[str, Any]:
    """One peer under callgrind: instructions per request, its top functions and its
    instructions per request by object file; ``keep``: a directory to copy the serving
    process's dump into (``<peer>.callgrind``, for ``callgrind_annotate --inclusive=yes``)."""
    load = counted_load(scenario)
    out_dir = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    try:
        with wrapped(callgrind_prefix(out_dir), SLOWDOWN):
            peer = start(upstream_port)
        try:
            request = peer.request(load.route, load.spec)
            asyncio.run(fixed_load(peer, request, warmup, concurrency))
            pids = serving_processes(peer.pids())
            _control("--zero", pids)
            tally = asyncio.run(fixed_load(peer, request, requests, concurrency))
            _control("--dump", pids)
        finally:
            peer.stop()
        if tally.failed or tally.streams != requests:
            raise SystemExit(f"{peer.name}: {tally.failed} of {requests} requests failed")
        dumps = [out_dir / f"cg.{pid}.1" for pid in pids]
        totals = {path: total_instructions(path.read_bytes()) for path in dumps}
        busiest = max(totals, key=lambda path: totals[path])
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(busiest, keep / f"{peer.name}.callgrind")
        dump = busiest.read_bytes()
        by_object = object_costs(dump.decode(errors="replace"))
        own_total = sum(by_object.values()) or 1
        per_request = sum(totals.values()) / requests
        return {
            "instructions_per_request": round(per_request),
            # A stream of many tokens: its instructions over its tokens (the request's own share,
            # about a two-hundredth of a 1-token request's count, included).
            **(
                {"instructions_per_token": round(per_request / load.tokens)}
                if load.tokens > 1
                else {}
            ),
            "processes": len(dumps),
            "top_self": [
                {"share_pct": share, "function": name} for share, name in top_functions(dump, top)
            ],
            # Shares, not counts: a mid-run dump's own costs add up to a little more than its
            # summary (about 1.7 million instructions more whatever the number of requests:
            # callgrind's ``totals:`` line, not this parser), so the split is of the own costs.
            "by_object_pct": {
                name: round(100 * cost / own_total, 2)
                for name, cost in sorted(by_object.items(), key=lambda item: -item[1])
                if cost >= own_total / 1000  # 0.1 % and up
            },
        }
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def measure(
    peers: list[str],
    *,
    requests: int,
    warmup: int,
    concurrency: int,
    scenario: str,
    base: Path | None,
    top: int,
    parts: Sequence[str] = (),
    keep: Path | None = None,
) -> dict[str, Any]:
    starters = dict(STARTERS)
    if base is not None:
        starters["base"] = lambda port: start_gateway_variant(
            "gateway-base", port, lambda conf: conf, tree=base
        )
        peers = [*peers, "base"] if "base" not in peers else peers
    if parts and "sources" not in peers:  # what the stubbed variants run, unstubbed
        peers = [*peers, "sources"]
    for part in parts:  # the gateway with one part stubbed (bench.ablate's stubs)
        starters[f"without-{part}"] = functools.partial(_ablated, part)
        peers = [*peers, f"without-{part}"]
    upstream, upstream_port = start_upstream()
    results: dict[str, Any] = {}
    try:
        for name in peers:
            print(f"[instructions] {name} ...", file=sys.stderr, flush=True)
            results[name] = count_peer(
                starters[name],
                upstream_port,
                requests=requests,
                warmup=warmup,
                concurrency=concurrency,
                scenario=scenario,
                top=top,
                keep=keep,
            )
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    finally:
        upstream.terminate()
        upstream.wait(5)
    return {
        "scenario": scenario,
        "requests": requests,
        "peers": results,
        "ratios": ratios(results),
        "parts": part_costs(results),
    }


def _ablated(part: str, port: int) -> Peer:
    return ablate.start_variant(f"without-{part}", [part], port)


def part_costs(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each stubbed part's instructions per request: the gateway's count minus its variant's,
    and that as a share of the gateway's. The variants run the sources (``bench.ablate``), so
    the whole is the ``sources`` peer's count when there is one."""
    whole_peer = "sources" if "sources" in results else "gateway"
    if whole_peer not in results:
        return {}
    whole = results[whole_peer]["instructions_per_request"]
    costs = {}
    for name, result in results.items():
        if name.startswith("without-"):
            cost = whole - result["instructions_per_request"]
            costs[name.removeprefix("without-")] = {
                "instructions": cost,
                "share_pct": round(100 * cost / whole, 2),
            }
    return costs


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """Each pair's instructions per request, as in ``bench.floor`` (and the gateway over its
    ``base`` when one was counted)."""
    per = {name: r["instructions_per_request"] for name, r in results.items()}
    pairs = [
        ("floor", "nginx"),
        ("contract", "nginx"),
        ("gateway", "nginx"),
        ("gateway", "contract"),
        ("gateway", "base"),
        ("sources", "contract"),
        ("gateway", "sources"),
    ]
    return {f"{a}/{b}": round(per[a] / per[b], 4) for a, b in pairs if a in per and b in per}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="nginx,floor,contract,gateway")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--scenario", default="chat-1", choices=SCENARIOS)
    parser.add_argument("--base", type=Path, help="also count the gateway from this checkout")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument(
        "--parts",
        default="",
        help="also count the gateway with each of these parts stubbed (bench.ablate's names)",
    )
    parser.add_argument(
        "--keep", type=Path, help="copy each peer's callgrind dump into this directory"
    )
    args = parser.parse_args()
    become_load_generator()
    result = measure(
        [name for name in args.peers.split(",") if name],
        requests=args.requests,
        warmup=args.warmup,
        concurrency=args.concurrency,
        scenario=args.scenario,
        base=args.base,
        top=args.top,
        parts=[part for part in args.parts.split(",") if part],
        keep=args.keep,
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
