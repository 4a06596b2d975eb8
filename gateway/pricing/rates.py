"""Prices and the cost arithmetic of one stream's usage. Pure: no I/O, no clock, no database.

The token protocol's ``usage`` convention (contract section 5, ``events.py``, and every adapter
in ``gateway/adapters/``):

* ``input_tokens`` is **all** the prompt: uncached input, cache reads and cache writes together.
  This is the convention of the Chat Completions and Responses APIs (prompt tokens include the
  cached ones) and of most providers. Providers that report input *without* cache reads and
  writes have adapters that add the cache counts back in before emitting ``usage`` (see each
  adapter's usage handling), so every provider arrives here in the same shape.
* ``cache_read_input_tokens`` (or, from adapters that only know the older field,
  ``cached_input_tokens``) and ``cache_write_input_tokens`` are parts of ``input_tokens``.
* ``output_tokens`` counts everything generated, reasoning included; ``reasoning_tokens`` is a
  part of it and is not charged again.

So, with prices per million tokens::

    uncached = input_tokens - cache_read - cache_write
    cost = (uncached * input + cache_read * cache_read_price + cache_write * cache_write_price
            + output_tokens * output) / 1e6 + per_request

A price without its own cache-read or cache-write rate charges those tokens at the input rate
(they stay inside ``uncached``), as ``genai-prices`` does. Tiered rates (a higher rate for every
token once the prompt exceeds a threshold, e.g. long-context prices) pick their tier by the total
``input_tokens``, the "cliff" rule of ``genai-prices``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.values import value

MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Rate:
    """USD per million tokens: ``base``, or the price of the last tier whose ``start`` the
    prompt's total input tokens exceed (``tiers`` sorted by start)."""

    base: float
    tiers: tuple[tuple[int, float], ...] = ()

    def at(self, total_input: int) -> float:
        for start, price in reversed(self.tiers):
            if total_input > start:
                return price
        return self.base


@dataclass(frozen=True, slots=True)
class Price:
    """One model's prices. ``cache_read`` / ``cache_write`` ``None``: charged at ``input``."""

    input: Rate
    output: Rate
    cache_read: Rate | None = None
    cache_write: Rate | None = None
    per_request: float = 0.0


@value
class Counts:
    """The token counts a cost needs, read from a ``usage`` dict (see the module docstring)."""

    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0


def _count(usage: Mapping[str, Any], key: str) -> int | None:
    value = usage.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def counts(usage: Mapping[str, Any] | None) -> Counts | None:
    """The counts of a ``usage`` event's data; ``None`` unless both ``input_tokens`` and
    ``output_tokens`` are known (a cost from half the usage would be a guess)."""
    if not usage:
        return None
    inp, out = _count(usage, "input_tokens"), _count(usage, "output_tokens")
    if inp is None or out is None:
        return None
    read = _count(usage, "cache_read_input_tokens")
    if read is None:
        read = _count(usage, "cached_input_tokens") or 0
    write = _count(usage, "cache_write_input_tokens") or 0
    return Counts(inp, out, read, write)


def cost(price: Price, c: Counts) -> float:
    """USD for counts ``c`` at ``price`` (see the module docstring for the arithmetic).

    Cache counts larger than ``input_tokens`` (a provider bug) never make the uncached part
    negative: it is clamped at zero and the cache parts are charged as reported.
    """
    total_in = c.input
    read = c.cache_read if price.cache_read is not None else 0
    write = c.cache_write if price.cache_write is not None else 0
    uncached = max(0, total_in - read - write)
    usd = uncached * price.input.at(total_in) + c.output * price.output.at(total_in)
    if price.cache_read is not None:
        usd += read * price.cache_read.at(total_in)
    if price.cache_write is not None:
        usd += write * price.cache_write.at(total_in)
    return usd / MTOK + price.per_request


def flat(
    input_per_mtok: float,
    output_per_mtok: float,
    cache_read_per_mtok: float | None = None,
    cache_write_per_mtok: float | None = None,
) -> Price:
    """A :class:`Price` without tiers (the shape of a ``pricing:`` override)."""
    return Price(
        input=Rate(input_per_mtok),
        output=Rate(output_per_mtok),
        cache_read=None if cache_read_per_mtok is None else Rate(cache_read_per_mtok),
        cache_write=None if cache_write_per_mtok is None else Rate(cache_write_per_mtok),
    )


def cost_of(usage: Mapping[str, Any] | None) -> float | None:
    """The ``cost_usd`` a usage dict carries (set by ``gateway/stream/meter.py``), or ``None``."""
    usd = usage.get("cost_usd") if usage else None
    return float(usd) if isinstance(usd, int | float) and not isinstance(usd, bool) else None
