"""The cost arithmetic (gateway/pricing/rates.py): the usage convention, cache parts, tiers."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.pricing.rates import Counts, Price, Rate, cost, counts, flat


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def test_counts_reads_the_protocol_usage() -> None:
    usage = {"input_tokens": 1000, "output_tokens": 50, "reasoning_tokens": 20}
    assert counts(usage) == Counts(1000, 50, 0, 0)


def test_counts_prefers_cache_read_and_falls_back_to_cached_input() -> None:
    both = {"input_tokens": 10, "output_tokens": 1, "cached_input_tokens": 3}
    assert counts(both) == Counts(10, 1, 3, 0)
    new = {**both, "cache_read_input_tokens": 4, "cache_write_input_tokens": 2}
    assert counts(new) == Counts(10, 1, 4, 2)


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {},
        {"input_tokens": 10},
        {"output_tokens": 10},
        {"input_tokens": -1, "output_tokens": 1},
        {"input_tokens": "10", "output_tokens": 1},
        {"input_tokens": True, "output_tokens": 1},
    ],
)
def test_incomplete_or_bad_usage_has_no_counts(usage: dict[str, Any] | None) -> None:
    assert counts(usage) is None


def test_cost_charges_each_part_once() -> None:
    price = flat(2.0, 8.0, 0.5, 2.5)
    # 10_000 input of which 3_000 cache reads and 1_000 cache writes; 2_000 output.
    usd = cost(price, Counts(10_000, 2_000, 3_000, 1_000))
    expected = (6_000 * 2.0 + 3_000 * 0.5 + 1_000 * 2.5 + 2_000 * 8.0) / 1e6
    assert close(usd, expected)


def test_reasoning_is_part_of_output_and_not_charged_again() -> None:
    price = flat(1.0, 10.0)
    plain = counts({"input_tokens": 100, "output_tokens": 900})
    with_reasoning = counts({"input_tokens": 100, "output_tokens": 900, "reasoning_tokens": 800})
    assert plain is not None and with_reasoning is not None
    assert cost(price, plain) == cost(price, with_reasoning)


def test_cache_without_own_price_is_charged_at_the_input_rate() -> None:
    price = flat(3.0, 15.0)
    assert close(cost(price, Counts(1_000, 0, 400, 100)), 1_000 * 3.0 / 1e6)


def test_cache_counts_above_input_never_go_negative() -> None:
    price = flat(1.0, 1.0, 0.1, 1.25)
    usd = cost(price, Counts(100, 0, 200, 0))
    assert close(usd, 200 * 0.1 / 1e6)


def test_tier_applies_to_every_token_once_the_prompt_exceeds_it() -> None:
    rate = Rate(3.0, ((200_000, 6.0),))
    price = Price(input=rate, output=Rate(15.0, ((200_000, 22.5),)))
    below = cost(price, Counts(200_000, 1_000))
    above = cost(price, Counts(200_001, 1_000))
    assert close(below, (200_000 * 3.0 + 1_000 * 15.0) / 1e6)
    assert close(above, (200_001 * 6.0 + 1_000 * 22.5) / 1e6)


def test_per_request_price_is_added() -> None:
    price = Price(input=Rate(1.0), output=Rate(1.0), per_request=0.01)
    assert close(cost(price, Counts(0, 0)), 0.01)
