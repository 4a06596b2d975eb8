"""gateway.stream.drain: the pieces shared by a drain and a detached (resumable) stream."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import events as ev
from gateway.events import Event
from gateway.stream.drain import fold_batch, record_after_abort, share_after


class _Metrics:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, int], int]] = []

    def drained(self, usage: dict[str, int], after_abort: int) -> None:
        self.calls.append((dict(usage), after_abort))


def _record() -> Any:
    return SimpleNamespace(metrics=_Metrics())


def test_fold_batch_folds_usage_and_flags_content() -> None:
    usage: dict[str, Any] = {"input_tokens": 3}
    batch = [
        Event(ev.DELTA, {"text": "hi"}),
        Event(ev.USAGE, {"output_tokens": 5}),
        Event(ev.USAGE, {"output_tokens": 7, "total_tokens": 10}),
    ]
    assert fold_batch(batch, usage) == 1
    assert usage == {"input_tokens": 3, "output_tokens": 7, "total_tokens": 10}


def test_fold_batch_without_content_is_zero() -> None:
    usage: dict[str, Any] = {}
    assert fold_batch([Event(ev.USAGE, {"output_tokens": 2})], usage) == 0
    assert usage == {"output_tokens": 2}
    assert fold_batch([], usage) == 0


def test_record_after_abort_records_only_the_fresh_usage() -> None:
    record = _record()
    before = {"input_tokens": 10, "output_tokens": 4}
    usage = {"input_tokens": 10, "output_tokens": 12, "model": "m"}
    record_after_abort(record, before, usage, writes_before=2, reads_after=2)
    assert record.metrics.calls == [({"output_tokens": 8}, share_after(8, 2, 2))]
    assert record.metrics.calls[0][1] == 4


def test_record_after_abort_records_nothing_when_nothing_came() -> None:
    record = _record()
    before = {"input_tokens": 10, "output_tokens": 4}
    record_after_abort(record, before, dict(before), writes_before=3, reads_after=0)
    assert record.metrics.calls == []


def test_share_after_without_content_before_is_everything() -> None:
    assert share_after(9, 0, 0) == 9
    assert share_after(9, 0, 3) == 9
    assert share_after(9, 3, 0) == 0


class _HeldSource:
    """A source whose last read was decoded but not delivered (the client left right then), and
    whose stream is already over: nothing more to read."""

    def __init__(self, held: list[Event]) -> None:
        self.held = held
        self.closed = False

    def take_held(self) -> list[Event]:
        held, self.held = self.held, []
        return held

    async def batches(self) -> Any:
        for _ in ():
            yield []

    def close(self) -> None:
        self.closed = True


async def test_a_drain_counts_the_read_that_was_not_delivered() -> None:
    from gateway.stream.drain import _drain

    source = _HeldSource(
        [Event(ev.DELTA, {"text": "late"}), Event(ev.USAGE, {"output_tokens": 9}), ev.end("stop")]
    )
    record = SimpleNamespace(
        metrics=SimpleNamespace(drained=_Metrics().drained, route="r"), usage={}
    )
    settled: list[dict[str, Any]] = []
    before = {"output_tokens": 4}
    await _drain(source, record, before, 1, 5.0, "id", settled.append)  # type: ignore[arg-type]
    assert settled == [{"output_tokens": 9}]
    assert source.closed and source.held == []


class _BlockingSource:
    """A source that delivers ``first`` and then waits for ever (an upstream still streaming)."""

    def __init__(self, first: list[Event]) -> None:
        self.first = first
        self.read = asyncio.Event()
        self.closed = False

    def take_held(self) -> list[Event]:
        return []

    async def batches(self) -> Any:
        yield self.first
        self.read.set()
        await asyncio.Event().wait()
        yield []

    def close(self) -> None:
        self.closed = True


async def test_a_drain_cancelled_by_shutdown_records_and_logs_what_it_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The usage it read before the shutdown's cancel reaches the metrics (as it reaches the
    budget), and the drain's line is logged; both used to be skipped on cancellation."""
    from gateway.stream import drain as drain_module

    lines: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(drain_module, "log_event", lambda name, **f: lines.append((name, f)))
    metrics = _Metrics()
    record = SimpleNamespace(metrics=SimpleNamespace(drained=metrics.drained, route="r"))
    source = _BlockingSource([Event(ev.DELTA, {"text": "x"}), Event(ev.USAGE, {"input_tokens": 7})])
    settled: list[dict[str, Any]] = []
    task = asyncio.ensure_future(
        drain_module._drain(source, record, {}, 1, 60.0, "id", settled.append)  # type: ignore[arg-type]
    )
    await asyncio.wait_for(source.read.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.closed
    assert settled == [{"input_tokens": 7}]
    assert metrics.calls == [({"input_tokens": 7}, 0)]
    assert lines == [
        ("drain", {"route": "r", "id": "id", "outcome": "drain_shutdown", "input_tokens": 7})
    ]
