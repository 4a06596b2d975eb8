"""Drain mode (``on_client_abort: drain``): after the client left, keep reading the upstream.

The provider bills the whole generation anyway, and sends usage last. Draining reads the rest of
the stream from its :class:`~gateway.stream.source.Source`, up to the route's ``drain_timeout``,
writes nothing to anyone, and records the usage the provider reports (``gateway_tokens_total``)
plus an estimate of the output tokens generated after the client left
(``gateway_tokens_after_abort_total``). The number of streams draining at once is bounded by
``limits.max_draining_streams`` (``GatewayState.try_drain``); past it, aborted streams are
cancelled as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from gateway import events as ev
from gateway.errors import GatewayError
from gateway.events import Event
from gateway.logs import log_event
from gateway.metrics import StreamRecord
from gateway.stream.source import Source

Settle = Callable[[dict[str, Any]], None]
"""Called with the stream's whole usage once the drain ends, however it ends (limits and
budgets settle on it; ``cost_usd`` included when priced)."""


def drain(
    source: Source,
    record: StreamRecord,
    timeout: float,
    request_id: str,
    settle: Settle | None = None,
) -> Coroutine[Any, Any, None]:
    """The drain of ``source``, as a coroutine to schedule.

    What it needs of ``record`` is copied now, synchronously: the session forgets the source
    right after this call (so its own ``finally`` does not close it). A pass-through tap stops
    keeping frames: no one will write them.
    """
    tap = source.attempt.tap
    if tap is not None:
        tap.stop()
    return _drain(
        source,
        record,
        dict(record.usage),
        record.content_writes,
        timeout,
        request_id,
        settle,
    )


async def _drain(
    source: Source,
    record: StreamRecord,
    before: dict[str, Any],
    writes_before: int,
    limit: float,
    request_id: str,
    settle: Settle | None,
) -> None:
    """Read to the end (or ``timeout``), close the upstream, record the new usage.

    Cancelled (a graceful shutdown ends the drains still reading when its grace is over), it
    still closes the upstream, settles, records the usage read so far and logs its ``drain``
    line, with the outcome ``drain_shutdown``.
    """
    usage = dict(before)
    # A read already decoded but not delivered when the client left (the push path handed it
    # back, or the stream was still holding its first events) counts like one read after.
    reads_after = fold_batch(source.take_held(), usage)
    outcome = "drained"
    try:
        async with asyncio.timeout(limit):
            async for events in source.batches():
                reads_after += fold_batch(events, usage)
    except TimeoutError:
        outcome = "drain_timeout"
    except GatewayError as exc:
        outcome = f"drain_{exc.error_code}"
    except asyncio.CancelledError:
        outcome = "drain_shutdown"
        raise
    finally:
        with contextlib.suppress(Exception):
            source.close()
        if settle is not None:  # even when the drain is cancelled (shutdown)
            settle(usage)
        record_after_abort(record, before, usage, writes_before, reads_after)
        log_event("drain", route=record.metrics.route, id=request_id, outcome=outcome, **usage)


def fold_batch(events: list[Event], usage: dict[str, Any]) -> int:
    """Fold the batch's ``usage`` events into ``usage``; 1 if the batch carried content, else 0.

    One upstream read is one batch: the sum of the results is the content-carrying reads that
    :func:`share_after` takes.
    """
    content = 0
    for event in events:
        if event.type == ev.USAGE:
            usage.update(event.data)
        elif event.type in ev.CONTENT_TYPES:
            content = 1
    return content


def record_after_abort(
    record: StreamRecord,
    before: dict[str, Any],
    usage: dict[str, Any],
    writes_before: int,
    reads_after: int,
) -> None:
    """Record the usage that came after the client left (``record.metrics.drained``).

    ``before`` is the usage the session already recorded when the client left, ``usage`` the
    whole usage at the end: only the positive integer differences are recorded, with the output
    tokens after the abort estimated by :func:`share_after`. Nothing new, nothing recorded.
    """
    fresh = {k: v - before.get(k, 0) for k, v in usage.items() if isinstance(v, int)}
    fresh = {k: v for k, v in fresh.items() if v > 0}
    if fresh:
        after = share_after(fresh.get("output_tokens", 0), writes_before, reads_after)
        record.metrics.drained(fresh, after)


def share_after(output: int, writes_before: int, reads_after: int) -> int:
    """The output tokens generated after the abort, estimated.

    Providers report output tokens for the whole generation, at its end: the part after the abort
    is their share of content-carrying upstream reads (before the abort one client write per read,
    ``StreamRecord.content_writes``; after it, the drained reads). All of it with no content
    before the abort.
    """
    total = writes_before + reads_after
    return output if total == 0 else round(output * reads_after / total)
