"""``bench.calls`` counts the Python functions a peer enters per request, coroutines apart."""

from __future__ import annotations

import asyncio
import sys

import pytest

from bench.calls import ROOT, STARTERS, CallCounter, count_calls, main, short_path


def test_short_path_names_a_file_as_a_reader_does() -> None:
    site = "/work/.venv/lib/python3.11/site-packages/prometheus_client/metrics.py"
    assert short_path(site) == "prometheus_client/metrics.py"
    assert short_path("/usr/lib/python3.11/asyncio/locks.py") == "asyncio/locks.py"
    assert short_path(f"{ROOT}gateway/stream/session.py") == "gateway/stream/session.py"
    assert short_path("<string>") == "<string>"


def plain(x: int) -> int:
    return x


async def returns() -> int:
    return 1


async def waits(fut: asyncio.Future[None]) -> None:
    await fut


async def program() -> None:
    """Three plain calls, two coroutines that never wait, one that waits once."""
    for i in range(3):
        plain(i)
    await returns()
    await returns()
    fut = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(waits(fut))
    await asyncio.sleep(0)
    fut.set_result(None)
    await task


def counted(counter: CallCounter) -> None:
    sys.setprofile(counter.hook)
    try:
        asyncio.run(program())
    finally:
        sys.setprofile(None)


def entries(counter: CallCounter, name: str) -> tuple[int, int, int]:
    """(calls, starts, resumptions) of the test module's function ``name``."""
    key = next(k for c in counter.counters() for k in c if k.endswith(f":{name}"))
    return counter.calls[key], counter.coroutines[key], counter.resumptions[key]


def test_the_counter_tells_calls_coroutine_starts_and_resumptions_apart() -> None:
    counter = CallCounter()
    counter.start()
    counted(counter)
    assert entries(counter, "plain") == (3, 0, 0)
    assert entries(counter, "returns") == (0, 2, 0)
    assert entries(counter, "waits") == (0, 1, 1)  # started, then resumed once after the wait
    assert entries(counter, "program") == (0, 1, 2)  # resumed after sleep(0) and the task
    report = counter.report(requests=2, top=3)
    module = "tests/bench/test_calls.py"
    mine = next(row for row in report["by_module"] if row["module"] == module)
    assert mine["per_request"] == (3 + 4 + 3) / 2
    assert report["coroutines_per_request"] >= 2.0  # asyncio's own coroutines may add to it
    assert report["frames_per_request"] == round(
        report["python_calls_per_request"]
        + report["coroutines_per_request"]
        + report["resumptions_per_request"],
        2,
    )
    assert len(report["top_calls"]) == 3


def test_the_counter_counts_nothing_until_started_and_after_it_stopped() -> None:
    counter = CallCounter()
    counted(counter)
    assert not any(counter.counters())
    counter.start()
    counter.stop()
    counted(counter)
    assert not any(counter.counters())


def test_count_calls_sees_callbacks_in_the_contract_floor_and_coroutines_in_the_gateway(
    upstream_port: int,
) -> None:
    floor = count_calls(STARTERS["contract"], upstream_port, requests=20, warmup=5, top=5)
    gateway = count_calls(STARTERS["sources"], upstream_port, requests=20, warmup=5, top=5)
    modules = {row["module"] for row in floor["by_module"]}
    assert {"bench/contract_floor.py", "bench/floor.py"} <= modules
    assert floor["coroutines_per_request"] == 0 == floor["resumptions_per_request"]
    assert floor["python_calls_per_request"] > 20  # its callbacks, encoder and metrics
    assert gateway["coroutines_per_request"] >= 10  # the handler's chain, started each request
    assert gateway["resumptions_per_request"] >= 1  # at least after the upstream's answer
    served = {row["function"].rpartition(":")[2] for row in gateway["top_coroutines"]}
    assert "_serve" in served
    assert gateway["frames_per_request"] > floor["frames_per_request"]


def test_the_hooked_mode_runs_only_a_module_command() -> None:
    with pytest.raises(SystemExit, match="python -m MODULE"):
        main(["--hooked", "out.json", "--", sys.executable, "script.py"])
    with pytest.raises(SystemExit, match="usage"):
        main(["--hooked", "out.json", sys.executable, "-m", "gateway"])


def test_an_unknown_peer_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown peers: nope"):
        main(["--peers", "contract,nope"])
