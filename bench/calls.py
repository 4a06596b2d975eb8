"""Python functions entered per request: how many, and in which modules, for each peer.

    python -m bench.calls [--peers contract,sources,gateway] [--requests 200] [--warmup 50]
                          [--top 15]

``bench.instructions`` counts what a request costs; this counts the Python frames behind it.
Each peer's server process runs under a profile hook (``sys.setprofile``; this module's
``--hooked`` mode runs the peer's own ``python -m <module>`` in-process behind the hook) that
counts every Python function entered, by function, with a coroutine's entries (its start and
each resumption through it) counted apart. Counting starts at SIGUSR1, after the warm-up, and
stops at SIGUSR2, which writes the counts to a file. The load is ``chat-1``'s request (one token
from the fake upstream) sent one after the other on one keep-alive connection, so nothing else
runs in the process meanwhile (a 100 ms timer of the gateway's, its metric tally's flush, adds a
call or two over a whole run).

The peers: ``contract`` (the contract floor, ``bench/contract_floor.py``: callbacks, no
coroutine), ``floor``, ``sources`` (the gateway on its Python sources: every call seen) and
``gateway`` (as shipped: the calls inside its compiled core are C calls, which a profile hook
does not see, so only its interpreted part is counted). Compare ``sources`` with ``contract``.
A profile hook makes a process several times slower: the counts are the result, not times.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dis
import inspect
import json
import os
import runpy
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bench.floor import start_floor
from bench.instructions import fixed_load, serving_processes
from bench.peers import Peer, start_gateway, start_gateway_sources, start_upstream, wrapped
from bench.scenarios import LOADS

ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR
"""A code object with one of these flags runs as a coroutine (or an async generator): the hook
sees a ``call`` event at its start and at every resumption."""
START = bytes((dis.opmap["RESUME"], 0))
"""The instruction a coroutine's frame is at when the hook sees its start (``RESUME 0``; at a
resumption it is at ``RESUME`` 1-3)."""
ROOT = f"{Path(__file__).resolve().parents[1]}/"
"""The checkout this module is in (its files are named from there)."""
SLOWDOWN = 4.0
"""How much longer a hooked peer may take to become ready."""

STARTERS: dict[str, Callable[[int], Peer]] = {
    "floor": start_floor,
    "contract": lambda port: start_floor(port, contract=True),
    "sources": start_gateway_sources,
    "gateway": start_gateway,
}


def short_path(filename: str) -> str:
    """A code object's file as a reader names it: ``gateway/rawhttp.py``,
    ``prometheus_client/metrics.py``, ``asyncio/locks.py`` (the checkout's and the
    installation's directories dropped)."""
    if filename.startswith(ROOT):
        return filename[len(ROOT) :]
    for marker in ("/site-packages/", "/lib/python3."):
        _, found, tail = filename.rpartition(marker)
        if found:
            return tail.partition("/")[2] if marker == "/lib/python3." else tail
    return filename


class CallCounter:
    """Counts the Python functions entered while :attr:`on`, by ``file:line:name``: plain
    calls, coroutines started and coroutine frames resumed, apart."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.coroutines: collections.Counter[str] = collections.Counter()
        self.resumptions: collections.Counter[str] = collections.Counter()
        self.on = False

    def hook(self, frame: FrameType, event: str, arg: object) -> None:
        """The ``sys.setprofile`` function (C functions' events are not counted)."""
        if event != "call" or not self.on:
            return
        code = frame.f_code
        key = f"{short_path(code.co_filename)}:{code.co_firstlineno}:{code.co_name}"
        if not code.co_flags & ASYNC_FLAGS:
            self.calls[key] += 1
        elif code.co_code[frame.f_lasti : frame.f_lasti + 2] == START:
            self.coroutines[key] += 1
        else:
            self.resumptions[key] += 1

    def start(self) -> None:
        for counter in self.counters():
            counter.clear()
        self.on = True

    def counters(self) -> tuple[collections.Counter[str], ...]:
        return (self.calls, self.coroutines, self.resumptions)

    def stop(self) -> None:
        self.on = False

    def report(self, requests: int, top: int) -> dict[str, Any]:
        """Per request: calls, coroutines started and resumed, the frames entered in all and
        by module, and the ``top`` functions."""
        modules: collections.Counter[str] = collections.Counter()
        for counter in self.counters():
            for key, n in counter.items():
                modules[key.partition(":")[0]] += n
        calls, started, resumed = (sum(counter.values()) for counter in self.counters())

        def per(n: int) -> float:
            return round(n / requests, 2)

        return {
            "python_calls_per_request": per(calls),
            "coroutines_per_request": per(started),
            "resumptions_per_request": per(resumed),
            "frames_per_request": per(calls + started + resumed),
            "modules": len(modules),
            "by_module": [{"module": m, "per_request": per(n)} for m, n in modules.most_common()],
            "top_calls": [
                {"function": f, "per_request": per(n)} for f, n in self.calls.most_common(top)
            ],
            "top_coroutines": [
                {"function": f, "per_request": per(n)}
                for f, n in (self.coroutines + self.resumptions).most_common(top)
            ],
        }


def run_hooked(out: Path, command: list[str]) -> None:
    """``--hooked OUT -- python -m MODULE ARGS``: run MODULE here under a :class:`CallCounter`;
    SIGUSR1 starts counting, SIGUSR2 writes the counts (raw, by function) to ``out``."""
    if len(command) < 3 or command[1] != "-m":
        raise SystemExit("--hooked runs a 'python -m MODULE ...' command")
    module = command[2]
    counter = CallCounter()

    def dump(*_: object) -> None:
        counter.stop()
        raw = [dict(c) for c in counter.counters()]
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw))
        tmp.rename(out)  # whole or absent: the driver polls for it

    signal.signal(signal.SIGUSR1, lambda *_: counter.start())
    signal.signal(signal.SIGUSR2, dump)
    sys.argv = [module, *command[3:]]
    sys.setprofile(counter.hook)
    threading.setprofile(counter.hook)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _poke(peer: Peer) -> None:
    """Make the peer run some Python (a connection opened and closed), so that a signal's
    Python handler runs even in a peer with no timer of its own."""
    with contextlib.suppress(OSError):
        socket.create_connection((peer.host, peer.port), 1).close()


def count_calls(
    start: Callable[[int], Peer], upstream_port: int, *, requests: int, warmup: int, top: int
) -> dict[str, Any]:
    """One peer under the hook: :meth:`CallCounter.report` over ``requests`` requests."""
    load = next(x for x in LOADS if x.name == "chat-1")
    out = Path(tempfile.mkdtemp(prefix="bench-calls-")) / "calls.json"
    prefix = [sys.executable, "-m", "bench.calls", "--hooked", str(out), "--"]
    with wrapped(prefix, SLOWDOWN):
        peer = start(upstream_port)
    try:
        request = peer.request(load.route, load.spec)
        asyncio.run(fixed_load(peer, request, warmup, 1))
        (pid,) = serving_processes(peer.pids())
        os.kill(pid, signal.SIGUSR1)
        _poke(peer)  # the handler runs before this connection's callbacks, not in a request
        time.sleep(0.1)
        tally = asyncio.run(fixed_load(peer, request, requests, 1))
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 20
        while not out.exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"{peer.name}: the hooked process wrote no counts")
            _poke(peer)
            time.sleep(0.1)
    finally:
        peer.stop()
    if tally.failed or tally.streams != requests:
        raise SystemExit(f"{peer.name}: {tally.failed} of {requests} requests failed")
    raw = json.loads(out.read_text())
    counter = CallCounter()
    for kept, counts in zip(counter.counters(), raw, strict=True):
        kept.update(counts)
    return counter.report(requests, top)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--hooked"]:
        if len(args) < 3 or args[2] != "--":
            raise SystemExit("usage: python -m bench.calls --hooked OUT -- python -m MODULE ...")
        run_hooked(Path(args[1]), args[3:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__)
    parser.add_argument("--peers", default="contract,sources,gateway")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--top", type=int, default=15)
    opts = parser.parse_args(args)
    names = opts.peers.split(",")
    unknown = [name for name in names if name not in STARTERS]
    if unknown:
        raise SystemExit(f"unknown peers: {', '.join(unknown)} (known: {', '.join(STARTERS)})")
    upstream, port = start_upstream()
    results: dict[str, Any] = {}
    try:
        for name in names:
            print(f"[calls] {name} ...", file=sys.stderr, flush=True)
            results[name] = count_calls(
                STARTERS[name], port, requests=opts.requests, warmup=opts.warmup, top=opts.top
            )
            summary = {k: results[name][k] for k in ("frames_per_request", "modules")}
            print(json.dumps({name: summary}), file=sys.stderr, flush=True)
    finally:
        upstream.terminate()
        upstream.wait()
    print(json.dumps({"scenario": "chat-1", "requests": opts.requests, "peers": results}, indent=1))


if __name__ == "__main__":
    main()
