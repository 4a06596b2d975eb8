"""Accounting's CPU: per stream (pricing once) and per event (nothing added). ``python -m
bench.accounting``.

1. :meth:`gateway.pricing.Pricer.cost_usd`, the one cost computation of a stream, in a loop for
   a fixed CPU budget: for a database price (``genai-prices``, tiered and with cache prices: the
   dearest path), for a ``pricing:`` override, and for the library's own ``calc_price`` as a
   reference.
2. A stream's whole accounting as the session runs it (``gateway/stream/meter.py``): a
   ``Meter``, the usage hook of its attempt, the hook on the stream's one ``usage`` event, the
   settlement (admission release and ``gateway_cost_usd_total``).
3. Per event: a 200-token ``openai-chat`` stream (one SSE chunk per token, then the usage chunk)
   through the real :class:`~gateway.pipeline.Pipeline`, without and with the meter's usage
   hook, in alternating rounds; the median CPU µs per event of each. The hook runs once per
   stream, so the two must agree within noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway import events as ev
from gateway.admission import Admission
from gateway.config.accounting import PriceOverride
from gateway.config.parse import parse_config
from gateway.jsonutil import dumps
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline, UsageHook
from gateway.pricing import Pricer
from gateway.request import parse_request
from gateway.state import build_state
from gateway.stream.attempts import Attempt
from gateway.stream.meter import Meter
from gateway.stream.plan import build_attempts

USAGE = {
    "input_tokens": 12_000,
    "output_tokens": 800,
    "reasoning_tokens": 300,
    "cached_input_tokens": 4_000,
    "cache_read_input_tokens": 4_000,
    "cache_write_input_tokens": 1_000,
}


def _per_call_us(fn: Callable[[], Any], budget: float) -> float:
    fn()  # warm the caches: the figure is the steady state of a running gateway
    n, start = 0, time.process_time()
    while (elapsed := time.process_time() - start) < budget:
        for _ in range(1000):
            fn()
        n += 1000
    return elapsed / n * 1e6


def cost_per_stream(budget: float = 1.0) -> dict[str, float]:
    """µs of CPU per end-of-stream cost computation, by price source."""
    pricer = Pricer(
        [PriceOverride("house-model", 0.4, 1.6, 0.1, 0.5)],
        {"messages": "anthropic", "local": None},
    )
    figures = {
        "database_tiered": _per_call_us(
            lambda: pricer.cost_usd("messages", "claude-sonnet-4-5", USAGE), budget
        ),
        "override": _per_call_us(lambda: pricer.cost_usd("local", "house-model", USAGE), budget),
    }
    try:
        import genai_prices
    except ImportError:
        return figures
    usage = genai_prices.Usage(
        input_tokens=12_000, output_tokens=800, cache_read_tokens=4_000, cache_write_tokens=1_000
    )
    figures["genai_prices_calc_price"] = _per_call_us(
        lambda: genai_prices.calc_price(usage, "claude-sonnet-4-5", provider_id="anthropic"),
        budget,
    )
    return figures


def _attempt() -> tuple[Attempt, Pricer]:
    doc = {
        "routes": [
            {
                "name": "r",
                "provider": "openai-chat",
                "upstream": {"base_url": "http://127.0.0.1:9", "model": "house-model"},
            }
        ],
        "pricing": [{"model": "house-model", "input_per_mtok": 0.4, "output_per_mtok": 1.6}],
    }
    config = parse_config(doc, env={})
    runtime = build_state(config, Metrics()).routes["r"]
    body = {"messages": [{"role": "user", "content": "Hello"}]}
    return build_attempts(runtime, parse_request(body), body)[0], Pricer(config.pricing)


def chat_stream(tokens: int = 200) -> list[bytes]:
    """An ``openai-chat`` stream, one read per chunk: ``tokens`` deltas, finish, usage, done."""

    def chunk(doc: dict[str, Any]) -> bytes:
        return b"data: " + dumps(doc) + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    reads = [chunk(choice({"content": f"tok{i} "})) for i in range(tokens)]
    reads.append(chunk(choice({}, "stop")))
    usage = {"prompt_tokens": 1200, "completion_tokens": tokens}
    usage["prompt_tokens_details"] = {"cached_tokens": 800}  # type: ignore[assignment]
    reads.append(chunk({"choices": [], "usage": usage}))
    reads.append(b"data: [DONE]\n\n")
    return reads


def stream_accounting(budget: float = 1.0) -> float:
    """µs of CPU per stream for the meter: construction, hook, one usage event, settlement."""
    attempt, pricer = _attempt()
    metrics = Metrics()
    admission = Admission(app="web")
    usage = ev.usage(input_tokens=1200, output_tokens=200, cache_read_input_tokens=800)

    def one() -> None:
        meter = Meter(pricer, metrics.accounting, admission, "r")
        hook = meter.hook(attempt)
        assert hook is not None
        meter.finished(hook(usage).data)

    return _per_call_us(one, budget)


def _events_per_stream(attempt: Attempt, reads: list[bytes], hook: UsageHook | None) -> int:
    pipe = Pipeline(attempt.adapter, on_usage=hook)
    n = len(pipe.accepted())
    for data in reads:
        n += len(pipe.feed(data))
    return n + len(pipe.close())


def per_event(rounds: int = 7, streams: int = 300) -> dict[str, float]:
    """Median CPU µs per event of the pipeline, without and with the meter's usage hook."""
    attempt, pricer = _attempt()
    reads = chat_stream()
    metrics = Metrics()
    admission = Admission()
    check = Pipeline(
        attempt.adapter,
        on_usage=Meter(pricer, metrics.accounting, admission, "r").hook(attempt),
    )
    priced = [e for r in reads for e in check.feed(r) if e.type == ev.USAGE]
    assert len(priced) == 1 and "cost_usd" in priced[0].data, "the hook prices the usage"
    figures: dict[str, list[float]] = {"pipeline_without_cost": [], "pipeline_with_cost": []}
    for _ in range(rounds):
        for name in figures:
            start, events = time.process_time(), 0
            for _ in range(streams):
                hook = None
                if name == "pipeline_with_cost":
                    meter = Meter(pricer, metrics.accounting, admission, "r")
                    hook = meter.hook(attempt)
                events += _events_per_stream(attempt, reads, hook)
            figures[name].append((time.process_time() - start) / events * 1e6)
    return {name: sorted(values)[len(values) // 2] for name, values in figures.items()}


if __name__ == "__main__":
    for name, us in cost_per_stream().items():
        print(f"{name:26s} {us:8.2f} µs per stream")
    print(f"{'meter_whole_stream':26s} {stream_accounting():8.2f} µs per stream")
    for name, us in per_event().items():
        print(f"{name:26s} {us:8.3f} µs per event (200-token stream, median of 7 rounds)")
