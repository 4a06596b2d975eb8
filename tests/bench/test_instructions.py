"""``bench.instructions`` counts a proxy's instructions per request under callgrind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.floor import start_floor
from bench.instructions import (
    PACED_GAP_MS,
    count_peer,
    counted_load,
    object_costs,
    part_costs,
    ratios,
    self_costs,
    serving_processes,
    top_functions,
    total_instructions,
)
from bench.scenarios import LOADS
from tests.support.system import require_binary

# A mid-run dump as callgrind writes it: compressed names defined by fn= and cfn=, a call's
# inclusive cost on the line after calls=, relative positions.
DUMP = """\
# callgrind format
version: 1
positions: line
events: Ir
summary: 1000

ob=(1) /usr/lib/libpython.so
fl=(1) ceval.c
fn=(1) eval
10 500
+2 100
cfl=(2) obmalloc.c
cfn=(2) malloc
calls=3 40
* 300

fl=(2)
fn=(2)
40 250
-3 50

fn=(1)
12 100
totals: 1000
"""


def test_total_instructions_is_the_summary_line() -> None:
    assert total_instructions(DUMP.encode()) == 1000
    with pytest.raises(ValueError):
        total_instructions(b"not callgrind")


def test_self_costs_leave_out_what_a_call_cost_and_resolve_compressed_names() -> None:
    assert self_costs(DUMP) == {"eval": 700, "malloc": 300}


# Two objects: the callee's object named by cob= on the call (not the caller's), then defined
# again by ob= where the callee's own lines start, by its compressed id.
TWO_OBJECTS = """\
# callgrind format
events: Ir
summary: 1000

ob=(1) /usr/bin/python3.11
fl=(1) ceval.c
fn=(1) eval
10 600
cob=(2) /venv/site-packages/orjson/orjson.cpython-311-x86_64-linux-gnu.so
cfi=(2) lib.rs
cfn=(2) loads
calls=1 40
11 300

ob=(2)
fl=(2)
fn=(2)
40 300

ob=(1)
fn=(1)
12 100
"""


def test_object_costs_sum_self_costs_by_the_object_file_each_function_is_in() -> None:
    assert object_costs(TWO_OBJECTS) == {
        "python3.11": 700,
        "orjson.cpython-311-x86_64-linux-gnu.so": 300,
    }
    assert object_costs(DUMP) == {"libpython.so": 1000}


def test_top_functions_are_shares_of_the_self_costs_largest_first() -> None:
    assert top_functions(DUMP.encode(), 5) == [(70.0, "eval"), (30.0, "malloc")]
    assert top_functions(DUMP.encode(), 1) == [(70.0, "eval")]


def test_a_paced_scenario_is_counted_with_wider_gaps_and_the_others_as_they_are() -> None:
    paced = counted_load("chat-paced")
    assert (paced.tokens, paced.gap_ms) == (200, PACED_GAP_MS)
    assert PACED_GAP_MS > 5  # wider than the scenario's own: each token its own read
    assert counted_load("chat-1") == next(x for x in LOADS if x.name == "chat-1")


def test_serving_processes_are_the_leaves_of_the_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert serving_processes([os.getpid(), child.pid]) == [child.pid]
        assert serving_processes([child.pid]) == [child.pid]
    finally:
        child.kill()
        child.wait()


def test_ratios_pair_what_was_counted() -> None:
    results = {
        name: {"instructions_per_request": n}
        for name, n in (
            ("nginx", 100),
            ("contract", 1000),
            ("gateway", 2500),
            ("base", 2000),
            ("sources", 3000),
        )
    }
    assert ratios(results) == {
        "contract/nginx": 10.0,
        "gateway/nginx": 25.0,
        "gateway/contract": 2.5,
        "gateway/base": 1.25,
        "sources/contract": 3.0,
        "gateway/sources": 0.8333,
    }


def test_a_real_proxy_counted_under_callgrind(upstream_port: int, tmp_path: Path) -> None:
    require_binary("valgrind")
    require_binary("callgrind_control")
    got = count_peer(
        start_floor,
        upstream_port,
        requests=60,
        warmup=20,
        concurrency=4,
        scenario="chat-1",
        top=5,
        keep=tmp_path,
    )
    # The floor parses a request and one upstream answer and writes three events: some tens of
    # thousands of instructions at least, and far less than the interpreter's start-up.
    assert 20_000 < got["instructions_per_request"] < 5_000_000
    assert got["processes"] == 1
    shares = [row["share_pct"] for row in got["top_self"]]
    assert len(shares) == 5 and shares == sorted(shares, reverse=True) and sum(shares) <= 100
    # The floor runs on uvloop and parses with httptools and orjson: each shows as its own
    # object, and the objects' shares are nearly the whole (those under 0.1 % are left out).
    by_object = got["by_object_pct"]
    assert any(name.startswith("loop.") for name in by_object), by_object
    assert any(name.startswith("orjson.") for name in by_object), by_object
    assert 99 <= sum(by_object.values()) <= 100.01
    kept = tmp_path / "floor.callgrind"
    assert total_instructions(kept.read_bytes()) > 60 * 20_000


def test_part_costs_are_the_gateway_minus_each_stubbed_variant() -> None:
    results = {
        "nginx": {"instructions_per_request": 100},
        "gateway": {"instructions_per_request": 1000},
        "without-log": {"instructions_per_request": 960},
        "without-tally": {"instructions_per_request": 975},
    }
    assert part_costs(results) == {
        "log": {"instructions": 40, "share_pct": 4.0},
        "tally": {"instructions": 25, "share_pct": 2.5},
    }
    assert part_costs({"nginx": {"instructions_per_request": 100}}) == {}


def test_part_costs_count_from_the_sources_when_they_were_counted() -> None:
    """The stubbed variants run the sources: a compiled gateway's count is not their whole."""
    results = {
        "gateway": {"instructions_per_request": 700},
        "sources": {"instructions_per_request": 1000},
        "without-log": {"instructions_per_request": 960},
    }
    assert part_costs(results) == {"log": {"instructions": 40, "share_pct": 4.0}}
