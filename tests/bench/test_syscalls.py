"""``bench.syscalls`` counts each proxy's system calls per request from ``strace -c``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.floor import start_floor
from bench.scenarios import LOADS
from bench.syscalls import measure_peer, parse_summary, per_request
from tests.support.system import require_binary

SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 46.20    0.052350           8      6460           getpid
 31.62    0.035825          12      2856        14 write
 14.94    0.016929          11      1440           read
  1.35    0.001533          34        45           epoll_pwait
------ ----------- ----------- --------- --------- ----------------
100.00    0.113304           9     10801        14 total
"""


def test_parse_summary_reads_the_calls_column_with_or_without_errors() -> None:
    assert parse_summary(SUMMARY) == {
        "getpid": 6460,
        "write": 2856,
        "read": 1440,
        "epoll_pwait": 45,
    }


def test_parse_summary_adds_a_call_listed_twice_and_skips_other_lines() -> None:
    text = "strace: Process 7 attached\n 1.0 0.1 1 10 read\n 2.0 0.2 2 5 read\n"
    assert parse_summary(text) == {"read": 15}


def test_per_request_divides_and_sorts() -> None:
    got = per_request({"read": 20, "write": 40}, 10)
    assert list(got) == ["write", "read", "total"]
    assert got == {"write": 4.0, "read": 2.0, "total": 6.0}
    with pytest.raises(ValueError):
        per_request({"read": 1}, 0)


async def test_measure_peer_splits_a_real_proxys_cpu_and_counts_its_calls(
    upstream_port: int, tmp_path: Path
) -> None:
    require_binary("strace")
    load = dataclasses.replace(next(x for x in LOADS if x.name == "chat-1"), duration=0.5)
    peer = start_floor(upstream_port)
    try:
        got = await measure_peer(peer, load, tmp_path)
    finally:
        peer.stop()
    cpu, calls = got["cpu_us"], got["calls"]
    assert set(cpu) == {"user", "system"}
    assert cpu["user"] + cpu["system"] > 0  # ticks of 10 ms: one of the two may round to zero
    # One request read from the client and one response read from the upstream; the upstream
    # request and the client's answer written: at least two reads and two writes each.
    assert 2 <= calls["read"] < 4
    assert 2 <= calls["write"] < 10
    assert calls["total"] >= calls["read"] + calls["write"]
