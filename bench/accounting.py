"""End-of-stream cost: CPU µs per stream for :meth:`gateway.pricing.Pricer.cost_usd`.

A stream's cost is computed once, at its end, from its last ``usage`` data. This measures that
call in a loop for a fixed CPU budget, for a database price (``genai-prices``, tiered and with
cache prices: the dearest path), for a ``pricing:`` override, and for the library's own
``calc_price`` as a reference. Run: ``python -m bench.accounting``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway.config.accounting import PriceOverride
from gateway.pricing import Pricer

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


if __name__ == "__main__":
    for name, us in cost_per_stream().items():
        print(f"{name:26s} {us:8.2f} µs per stream")
