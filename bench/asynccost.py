"""What the async shape of a request path costs, in instructions (callgrind).

    python -m bench.asynccost [--n 20000]

A request through the gateway runs in a task and passes through a chain of coroutines (the
server's handler, the route's, the session's, failover's, the upstream client's), where the
contract floor (``bench/contract_floor.py``) runs as callbacks. To price that shape apart from
the work done inside it, each case below runs ``n`` times in one process under callgrind, on
uvloop as the gateway does, and its instructions per iteration are the process's count minus
that of the same process with no iteration (``--case none``: start-up, imports, the loop's set-up),
over ``n``:

* ``call``: a plain function call (the baseline any code pays);
* ``await``: awaiting a coroutine that returns at once (a coroutine layer that never waits);
* ``chain0`` / ``chain10``: a task whose innermost coroutine waits once on a future, directly
  (``chain0``) and under ten more coroutine layers (``chain10``): a tenth of their difference is
  what one layer of an await chain costs when the task waits once under it (the layer's
  creation, its await, one suspension and one resumption passing through it);
* ``task``: a task made and awaited for a coroutine that returns at once (its creation, its
  step scheduled by the loop, its completion waking the awaiting one).

The derived figures: ``await_over_call`` (``await`` minus ``call``), ``chain_level`` and
``task``. Pair them with ``python -m bench.calls`` (how many coroutines a request enters) for
the share of a request's instructions that the async shape is (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path


def _plain(x: int) -> int:
    return x


async def _returns(x: int) -> int:
    return x


async def _waits(fut: asyncio.Future[None]) -> None:
    await fut


async def _layer(depth: int, fut: asyncio.Future[None]) -> None:
    if depth == 0:
        return await _waits(fut)
    return await _layer(depth - 1, fut)


async def _none(n: int) -> None:
    return None


async def _call(n: int) -> None:
    for i in range(n):
        _plain(i)


async def _await(n: int) -> None:
    for i in range(n):
        await _returns(i)


async def _task(n: int) -> None:
    loop = asyncio.get_running_loop()
    for i in range(n):
        await loop.create_task(_returns(i))


def _chain(depth: int) -> Callable[[int], Awaitable[None]]:
    async def run(n: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            fut: asyncio.Future[None] = loop.create_future()
            task = loop.create_task(_layer(depth, fut))
            await asyncio.sleep(0)  # the task runs down to the future and waits there
            fut.set_result(None)
            await task

    return run


CASES: dict[str, Callable[[int], Awaitable[None]]] = {
    "none": _none,
    "call": _call,
    "await": _await,
    "chain0": _chain(0),
    "chain10": _chain(10),
    "task": _task,
}
"""Each case's loop, ``n`` iterations (``none``: the process without any)."""


def run_case(case: str, n: int) -> None:
    """Run ``case`` ``n`` times on uvloop (the process that callgrind counts)."""
    import uvloop

    uvloop.run(CASES[case](n))  # type: ignore[arg-type]  # a coroutine, as run() wants


def count(case: str, n: int) -> int:
    """Instructions of a process that runs ``case`` ``n`` times."""
    # Imported here: the counted process (``--case``) imports no more than its case needs.
    from bench.instructions import callgrind_prefix, total_instructions

    with tempfile.TemporaryDirectory(prefix="bench-asynccost-") as tmp:
        out = Path(tmp)
        cmd = [*callgrind_prefix(out), sys.executable, "-m", "bench.asynccost"]
        subprocess.run([*cmd, "--case", case, "--n", str(n)], check=True, timeout=600)
        (dump,) = out.glob("cg.*")
        return total_instructions(dump.read_bytes())


def derive(per_iteration: dict[str, float]) -> dict[str, float]:
    """The derived figures (module docs) from each case's instructions per iteration."""
    return {
        "await_over_call": round(per_iteration["await"] - per_iteration["call"]),
        "chain_level": round((per_iteration["chain10"] - per_iteration["chain0"]) / 10),
        "task": round(per_iteration["task"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.asynccost", description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--case", choices=CASES, help="run one case here (under callgrind)")
    parser.add_argument("--cases", default="call,await,chain0,chain10,task")
    opts = parser.parse_args(argv)
    if opts.case is not None:
        run_case(opts.case, opts.n)
        return
    cases = opts.cases.split(",")
    unknown = [case for case in cases if case not in CASES]
    if unknown:
        raise SystemExit(f"unknown cases: {', '.join(unknown)} (known: {', '.join(CASES)})")
    base = count("none", 0)
    per_iteration = {case: round((count(case, opts.n) - base) / opts.n) for case in cases}
    result: dict[str, object] = {"n": opts.n, "per_iteration": per_iteration}
    if {"call", "await", "chain0", "chain10", "task"} <= set(cases):
        result["derived"] = derive({k: float(v) for k, v in per_iteration.items()})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
