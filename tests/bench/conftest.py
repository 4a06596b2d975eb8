"""Fixtures of the benchmark's tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture
def upstream_port() -> Iterator[int]:
    """The benchmark's fake upstream (``bench/fake_upstream.py``) in its own process, on any
    core (``bench.peers.start_upstream`` pins it to the load core): its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_upstream", "--port", "0"], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[0] == b"ready"
    try:
        yield int(line[1])
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()
