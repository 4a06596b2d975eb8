"""Long-running fuzzer for the framing decoders and every adapter (outside CI).

The same property as ``tests/fuzz/test_pipeline_fuzz.py`` (random bytes, random network splits:
never an exception other than the gateway's own, never a hang, exactly one terminal event,
last), driven by Hypothesis for as long as you like, round-robin over every adapter::

    .venv/bin/python -m fuzz.fuzz_pipeline --minutes 30
    .venv/bin/python -m fuzz.fuzz_pipeline --minutes 5 --adapter anthropic --adapter gemini

Failures are shrunk to a minimal input and kept in ``.hypothesis/`` (replayed first next run);
the script prints the falsifying bytes and exits 1. See docs/operations/reliability.md.
"""

from __future__ import annotations

import argparse
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapters import ADAPTERS
from tests.fuzz.inputs import split, stream_bytes
from tests.fuzz.test_pipeline_fuzz import run_pipeline

TERMINALS = ("end", "error")


def check(name: str, data: bytes, cuts: list[int]) -> None:
    events = run_pipeline(name, split(data, cuts))
    terminals = [e for e in events if e.type in TERMINALS]
    assert len(terminals) == 1 and events[-1] is terminals[0], (name, events[-3:])


def fuzz(name: str, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(data=stream_bytes, cuts=st.lists(st.integers(0, 1 << 20), max_size=24))
    def prop(data: bytes, cuts: list[int]) -> None:
        check(name, data, cuts)

    prop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--adapter", action="append", choices=sorted(ADAPTERS))
    parser.add_argument("--batch", type=int, default=2000, help="examples per adapter per round")
    args = parser.parse_args(argv)
    names = args.adapter or sorted(ADAPTERS)
    deadline = time.monotonic() + args.minutes * 60
    rounds = total = 0
    while time.monotonic() < deadline:
        for name in names:
            t0 = time.monotonic()
            try:
                fuzz(name, args.batch)
            except Exception as exc:  # a property failure: Hypothesis printed the input
                print(f"FAILED on {name}: {exc!r}", file=sys.stderr)
                return 1
            total += args.batch
            print(f"{name}: {args.batch} examples in {time.monotonic() - t0:.1f}s", flush=True)
            if time.monotonic() >= deadline:
                break
        rounds += 1
    print(f"ok: {total} examples over {rounds} round(s), no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
