"""``bench.asynccost`` prices the async shape of a request path in instructions."""

from __future__ import annotations

import pytest

from bench.asynccost import CASES, count, derive, main, run_case
from tests.support.system import require_binary


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_case_runs_on_uvloop(case: str) -> None:
    run_case(case, 3)  # what callgrind counts, run here without it


def test_the_derived_figures_come_from_the_cases() -> None:
    per_iteration = {"call": 550.0, "await": 1270.0, "chain0": 34000.0, "chain10": 49000.0}
    derived = derive({**per_iteration, "task": 19000.0})
    assert derived == {"await_over_call": 720, "chain_level": 1500, "task": 19000}


def test_count_is_the_process_total_under_callgrind() -> None:
    require_binary("valgrind")
    # One run (a Python start-up under callgrind is about ten seconds): the process's
    # instructions, start-up and the loop included, as the cases' differences use them.
    assert 5e7 < count("call", 100) < 5e9


def test_an_unknown_case_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown cases: nope"):
        main(["--cases", "call,nope"])
