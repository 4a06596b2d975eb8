"""Request ids: 32 hex digits, never repeated, across batches and across a fork."""

from __future__ import annotations

import os
import re
import sys

import pytest

from gateway import ids
from gateway.ids import BATCH, new_request_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_an_id_is_128_bits_as_32_hex_digits() -> None:
    for _ in range(3 * BATCH):
        assert HEX32.fullmatch(new_request_id())


def test_ids_do_not_repeat_over_several_batches() -> None:
    drawn = [new_request_id() for _ in range(10 * BATCH + 7)]
    assert len(set(drawn)) == len(drawn)


def test_each_batch_reads_the_random_source_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(ids.os, "urandom", urandom)
    ids._pending.clear()
    for _ in range(2 * BATCH):
        new_request_id()
    assert reads == [16 * BATCH, 16 * BATCH]


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork")
def test_a_forked_process_does_not_hand_out_its_parents_ids() -> None:
    new_request_id()  # the parent holds unused ids now
    assert ids._pending
    parents_next = list(ids._pending)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its first ids, then leave without pytest's teardown
        try:
            os.close(read_end)
            drawn = " ".join(new_request_id() for _ in range(5))
            os.write(write_end, drawn.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        childs = pipe.read().split()
    os.waitpid(pid, 0)
    assert len(childs) == 5
    assert not set(childs) & set(parents_next)
    assert ids._pending == parents_next  # the parent's own are untouched
