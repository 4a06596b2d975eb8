"""Drain mode (``on_client_abort: drain``): after the client left, keep reading the upstream.

The provider bills the whole generation anyway, and sends usage last. Draining reads the rest of
the stream, up to the route's ``drain_timeout``, writes nothing to anyone, and records the usage
and the output tokens generated after the abort. The number of streams draining at once is
bounded by ``limits.max_draining_streams``; past it, aborted streams are cancelled as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from gateway import events as ev
from gateway.errors import GatewayError
from gateway.logs import log_event

if TYPE_CHECKING:
    from gateway.stream import StreamSession


async def drain_stream(session: StreamSession) -> None:
    """Read ``session``'s upstream to its end (or the drain deadline) and record usage."""
    upstream, pipeline = session.upstream, session.pipeline
    if upstream is None or pipeline is None:
        return
    route = session.route
    usage: dict[str, int] = {}
    content_before = dict(session.usage)
    outcome = "drained"
    try:
        async with asyncio.timeout(route.drain_timeout):
            while not pipeline.done:
                chunk = await upstream.read()
                for event in pipeline.feed(chunk) if chunk else pipeline.close():
                    if event.type == ev.USAGE:
                        usage.update(event.data)
    except TimeoutError:
        outcome = "drain_timeout"
    except GatewayError as exc:
        outcome = f"drain_{exc.error_code}"
    finally:
        with contextlib.suppress(Exception):
            upstream.close()
    metrics = session.metrics
    if usage:
        metrics.tokens(usage)
        after = usage.get("output_tokens", 0) - content_before.get("output_tokens", 0)
        if after > 0:
            metrics.metrics.tokens_after_abort.labels(route.name).inc(after)
    log_event("drain", route=route.name, id=session.request_id, outcome=outcome, **usage)
