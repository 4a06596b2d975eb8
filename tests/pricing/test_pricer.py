"""The pricer (gateway/pricing/pricer.py): overrides, the genai-prices database, unknown prices."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from gateway.config.accounting import PriceOverride
from gateway.pricing import Catalog, Pricer

genai_prices = pytest.importorskip("genai_prices")

OVERRIDE = PriceOverride("house-model", 0.4, 1.6, 0.1, 0.5)
PROVIDERS: dict[str, str | None] = {
    "chat": "openai",
    "messages": "anthropic",
    "generate": "google",
    "local": None,
}


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def pricer(*overrides: PriceOverride) -> Pricer:
    return Pricer(overrides, PROVIDERS)


def test_override_prices_usage_with_cache_fields() -> None:
    usage = {
        "input_tokens": 12_345,
        "output_tokens": 678,
        "reasoning_tokens": 100,
        "cached_input_tokens": 2_000,
        "cache_read_input_tokens": 2_000,
        "cache_write_input_tokens": 345,
    }
    got = pricer(OVERRIDE).cost_usd("local", "house-model", usage)
    expected = (10_000 * 0.4 + 2_000 * 0.1 + 345 * 0.5 + 678 * 1.6) / 1_000_000
    assert got is not None and close(got, expected)


def test_override_wins_over_the_database() -> None:
    mine = PriceOverride("gpt-5-mini", 1.0, 1.0, 1.0, 1.0)
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    assert pricer(mine).cost_usd("chat", "gpt-5-mini", usage) == pytest.approx(2.0, rel=1e-12)
    assert pricer().cost_usd("chat", "gpt-5-mini", usage) != pytest.approx(2.0)


def _library(model: str, provider_id: str, usage: dict[str, int]) -> float:
    read = usage.get("cache_read_input_tokens", 0)
    calc = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            cache_read_tokens=read,
            cache_write_tokens=usage.get("cache_write_input_tokens", 0),
        ),
        model,
        provider_id=provider_id,
    )
    return float(calc.total_price)


@pytest.mark.parametrize(
    ("provider", "model", "provider_id"),
    [
        ("chat", "gpt-5-mini", "openai"),
        ("chat", "gpt-4o", "openai"),
        ("messages", "claude-sonnet-4-5", "anthropic"),  # tiered above 200k input tokens
        ("messages", "claude-3-5-haiku-latest", "anthropic"),
    ],
)
def test_database_price_matches_the_library_calculation(
    provider: str, model: str, provider_id: str
) -> None:
    rng = random.Random(model)
    p = pricer()
    for _ in range(50):
        inp = rng.choice([rng.randrange(0, 5_000), rng.randrange(150_000, 400_000)])
        read = rng.randrange(0, inp // 2 + 1)
        write = rng.randrange(0, (inp - read) // 2 + 1) if provider_id == "anthropic" else 0
        usage = {
            "input_tokens": inp,
            "output_tokens": rng.randrange(0, 20_000),
            "cache_read_input_tokens": read,
            "cache_write_input_tokens": write,
        }
        got = p.cost_usd(provider, model, usage)
        want = _library(model, provider_id, usage)
        assert got is not None
        assert abs(got - want) <= 1e-9 * max(want, 1e-12), (usage, got, want)


def test_a_model_the_database_lists_as_free_costs_zero_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An entry with no price at all is free in the database (its own calculation charges 0;
    e.g. open models on a provider's free tier): ``cost_usd`` 0, not unknown, no warning."""
    usage = {"input_tokens": 12_000, "output_tokens": 3_000, "cache_read_input_tokens": 1_000}
    assert _library("gemma-3-27b-it", "google", usage) == 0
    with caplog.at_level(logging.WARNING, logger="gateway"):
        assert pricer().cost_usd("generate", "gemma-3-27b-it", usage) == 0.0
    assert "price_unknown" not in caplog.text
    # Prices, but none for tokens (speech by the character): still unknown, never a guess.
    assert pricer().cost_usd("chat", "tts-1", usage) is None


def test_unknown_price_is_none_and_warns_once_per_model(caplog: pytest.LogCaptureFixture) -> None:
    p = pricer()
    usage = {"input_tokens": 1, "output_tokens": 1}
    with caplog.at_level(logging.WARNING, logger="gateway"):
        assert p.cost_usd("local", "llama-local", usage) is None
        assert p.cost_usd("local", "llama-local", usage) is None
        assert p.cost_usd("chat", "no-such-model-anywhere", usage) is None
        assert p.cost_usd("local", None, usage) is None
    warned = [r for r in caplog.records if r.getMessage() == "price_unknown"]
    models = [r.fields["model"] for r in warned]  # type: ignore[attr-defined]
    assert models == ["llama-local", "no-such-model-anywhere", ""]


def test_incomplete_usage_costs_none_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway"):
        assert pricer().cost_usd("local", "llama-local", {"output_tokens": 3}) is None
    assert not caplog.records


class CountingCatalog(Catalog):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def lookup(self, provider_id: str, model: str) -> Any:
        self.lookups += 1
        return super().lookup(provider_id, model)


def test_lookups_are_cached_per_provider_and_model() -> None:
    catalog = CountingCatalog()
    p = Pricer((), PROVIDERS, catalog)
    usage = {"input_tokens": 10, "output_tokens": 10}
    for _ in range(5):
        p.cost_usd("chat", "gpt-5-mini", usage)
        p.cost_usd("chat", "not-a-model", usage)
    assert catalog.lookups == 2


def test_worst_case_uses_max_tokens_and_body_estimate() -> None:
    p = pricer(PriceOverride("m", 2.0, 10.0, 2.0, 2.0))
    usd = p.worst_case_usd("local", "m", max_tokens=1_000, body_bytes=4_001)
    assert usd is not None and close(usd, (1_001 * 2.0 + 1_000 * 10.0) / 1e6)
    dear_writes = pricer(PriceOverride("m", 2.0, 10.0, 0.2, 2.5))
    usd = dear_writes.worst_case_usd("local", "m", max_tokens=0, body_bytes=4_000)
    assert usd is not None and close(usd, 1_000 * 2.5 / 1e6)
    assert p.worst_case_usd("local", "unknown", 10, 10) is None


def _snapshot_cache_sizes(catalog: Catalog) -> int:
    snapshot = catalog.load()
    return sum(len(getattr(snapshot, name, ())) for name in ("_provider_cache", "_lookup_cache"))


def test_request_model_names_do_not_grow_the_databases_own_caches() -> None:
    """A route with ``allow_model_override`` prices whatever model a request names: the
    database's own lookup caches (keyed by the name, never evicted) must not keep them."""
    p = pricer()
    usage = {"input_tokens": 10, "output_tokens": 10}
    assert p.cost_usd("messages", "claude-sonnet-4-5", usage) is not None
    before = _snapshot_cache_sizes(p.catalog)
    for i in range(300):
        p.cost_usd("chat", f"no-such-model-{i}", usage)  # a miss
        assert p.cost_usd("messages", f"claude-sonnet-4-5-x{i}", usage) is not None  # a hit
    assert _snapshot_cache_sizes(p.catalog) == before


def test_a_huge_model_name_is_neither_kept_nor_looked_up() -> None:
    """No real model name is kilobytes long: such a name has no database price and is not
    cached (4096 cached names of a megabyte each would be gigabytes); an override of that
    exact name still prices it."""
    catalog = CountingCatalog()
    huge = "claude-sonnet-4-5-" + "x" * 100_000
    p = Pricer((PriceOverride(huge[:-1], 1.0, 1.0, 1.0, 1.0),), PROVIDERS, catalog)
    usage = {"input_tokens": 10, "output_tokens": 10}
    for _ in range(3):
        assert p.cost_usd("messages", huge, usage) is None
    assert p.cost_usd("messages", huge[:-1], usage) == pytest.approx(20 / 1e6)
    assert catalog.lookups == 3 and not catalog._cache
    assert all(len(model) < 1_000 for _, model in p._entries)
    assert all(len(model) < 1_000 for _, model in p._warned)
