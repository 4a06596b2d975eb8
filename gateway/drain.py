"""Drain mode (``on_client_abort: drain``): after the client left, keep reading the upstream.

The provider bills the whole generation anyway, and sends usage last. Draining reads the rest of
the stream, up to the route's ``drain_timeout``, writes nothing to anyone, and records the usage
the provider reports (``gateway_tokens_total``) plus an estimate of the output tokens generated
after the client left (``gateway_tokens_after_abort_total``). The number of streams draining at
once is bounded by ``limits.max_draining_streams`` (``GatewayState.try_drain``); past it, aborted
streams are cancelled as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from gateway import events as ev
from gateway.errors import GatewayError
from gateway.logs import log_event

if TYPE_CHECKING:
    from gateway.metrics import RouteMetrics
    from gateway.pipeline import Pipeline
    from gateway.stream import StreamSession
    from gateway.upstream import UpstreamStream


def drain_stream(session: StreamSession) -> Coroutine[Any, Any, None]:
    """The drain of ``session``'s upstream, as a coroutine to schedule.

    Everything is captured now, synchronously: the session hands its upstream over and forgets it
    right after this call (so its own ``finally`` does not close it), before the task first runs.
    """
    return _drain(
        session.upstream,
        session.pipeline,
        dict(session.usage),
        session.metrics,
        session.route.drain_timeout,
        session.request_id,
        session.content_writes,
    )


async def _drain(
    upstream: UpstreamStream | None,
    pipeline: Pipeline | None,
    before: dict[str, int],
    metrics: RouteMetrics,
    drain_timeout: float,
    request_id: str,
    writes_before: int = 0,
) -> None:
    """Read to the end (or ``drain_timeout``), close the upstream, record the new usage."""
    if upstream is None:
        return
    usage = dict(before)
    reads_after = 0  # upstream reads carrying content: the unit of session.content_writes
    outcome = "drained"
    try:
        if pipeline is not None:
            async with asyncio.timeout(drain_timeout):
                while not pipeline.done:
                    chunk = await upstream.read()
                    content = False
                    for event in pipeline.feed(chunk) if chunk else pipeline.close():
                        if event.type == ev.USAGE:
                            usage.update(event.data)
                        elif event.type in ev.CONTENT_TYPES:
                            content = True
                    reads_after += content
    except TimeoutError:
        outcome = "drain_timeout"
    except GatewayError as exc:
        outcome = f"drain_{exc.error_code}"
    finally:
        with contextlib.suppress(Exception):
            upstream.close()
    # The session already recorded the usage it wrote; record only what came after.
    fresh = {k: v - before.get(k, 0) for k, v in usage.items() if isinstance(v, int)}
    fresh = {k: v for k, v in fresh.items() if v > 0}
    if fresh:
        metrics.tokens(fresh)
        after = _share_after(fresh.get("output_tokens", 0), writes_before, reads_after)
        if after:
            metrics.metrics.tokens_after_abort.labels(metrics.route).inc(after)
    log_event("drain", route=metrics.route, id=request_id, outcome=outcome, **usage)


def _share_after(output: int, writes_before: int, reads_after: int) -> int:
    """The output tokens generated after the abort, estimated.

    Providers report output tokens for the whole generation, at its end: the part after the abort
    is their share of content-carrying upstream reads (before the abort one client write per read,
    ``StreamSession.content_writes``; after it, the drained reads). All of it with no content
    before the abort.
    """
    total = writes_before + reads_after
    return output if total == 0 else round(output * reads_after / total)
