"""The price database: ``genai-prices`` (PyPI, by the pydantic team), read once per model.

The package ships a snapshot of every provider's model prices (with cache-read, cache-write and
tiered long-context prices, and prices that change on a date). The gateway never fetches prices
at run time: the installed package version *is* the price list, so pin or upgrade it like any
dependency (``pip install 'genai-prices==X.Y.Z'``); ``pricing:`` overrides in the config win
over it (``docs/accounting.md``).

Lookups go through the snapshot's own model matching (the provider's ``find_model``: aliases,
dated model names) once per ``(provider id, model)``; the result, a hit or a miss, is cached here,
bounded. Not through ``find_provider_model``, whose caches keep every name ever asked for (and
a request may name any model, of any length).
A hit's prices are converted once into a :class:`~gateway.pricing.rates.Price` (floats), so a
stream's cost is a few multiplications instead of the library's Decimal unit decomposition
(about 80 µs per call). The result equals the library's ``calc_price`` for token usage (a test
compares them); prices of units the token protocol never reports (audio, images, web searches,
1-hour cache writes, ...) have a count of zero there too and are left out.

Without the package installed (the ``prices`` extra), every lookup misses: only overrides price.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.pricing.rates import Price, Rate

MAX_CACHED = 4096
"""Bound on cached lookups (the model of a request may come from the request)."""

MAX_MODEL_CHARS = 256
"""Longest model name looked up in the database. No real model id (cloud ARNs included) comes
near it; a request's model (``allow_model_override``) may be as long as the body, and neither
the caches here nor a database lookup should hold or scan megabytes of it: a longer name has no
database price (a ``pricing:`` override of that exact name still applies)."""


def _rate(value: Any) -> Rate | None:
    """A ``genai-prices`` price value (Decimal or TieredPrices, per million) as a :class:`Rate`."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return Rate(float(value))
    base, tiers = getattr(value, "base", None), getattr(value, "tiers", None)
    if isinstance(base, Decimal) and isinstance(tiers, list):
        ordered = sorted((int(t.start), float(t.price)) for t in tiers)
        return Rate(float(base), tuple(ordered))
    return None  # a shape this version does not know: treated as unpriced by the caller


def _lists_nothing(model_price: Any) -> bool:
    """Whether a ``ModelPrice`` sets no price at all (its prices are its public attributes)."""
    fields = getattr(model_price, "__dict__", None)
    if not isinstance(fields, dict):
        return False  # a shape this version does not know: not read as free
    return all(v is None for k, v in fields.items() if not k.startswith("_"))


FREE = Price(input=Rate(0.0), output=Rate(0.0))
"""A database entry that lists no price at all: the model is free (the database's own reading:
its calculation charges 0), e.g. open models on a provider's free tier."""


def compile_price(model_price: Any) -> Price | None:
    """A ``genai_prices`` ``ModelPrice`` as a :class:`Price`: :data:`FREE` when it lists no
    price at all; ``None`` (unknown) when it lists prices but not both input and output token
    prices (audio-only, per-character or embedding models: a cost from tokens would be a
    guess)."""
    if _lists_nothing(model_price):
        return FREE
    inp = _rate(getattr(model_price, "input_mtok", None))
    out = _rate(getattr(model_price, "output_mtok", None))
    if inp is None or out is None:
        return None
    requests = getattr(model_price, "requests_kcount", None)
    return Price(
        input=inp,
        output=out,
        cache_read=_rate(getattr(model_price, "cache_read_mtok", None)),
        cache_write=_rate(getattr(model_price, "cache_write_mtok", None)),
        per_request=float(requests) / 1000 if isinstance(requests, Decimal) else 0.0,
    )


class Entry:
    """One model's prices in the database; :meth:`price` resolves date-dependent prices."""

    __slots__ = ("_compiled", "_info")

    def __init__(self, info: Any) -> None:
        self._info = info
        self._compiled: dict[int, Price | None] = {}

    def price(self, now: datetime | None = None) -> Price | None:
        """The price in force at ``now`` (default: the current time)."""
        info = self._info
        prices = info.prices
        if isinstance(prices, list):  # conditional prices: pick the one active now
            prices = info.get_prices(now or datetime.now(UTC))
        key = id(prices)  # the snapshot keeps every ModelPrice alive, so ids are stable
        if key not in self._compiled:
            self._compiled[key] = compile_price(prices)
        return self._compiled[key]


class Catalog:
    """Cached ``(provider id, model) -> Entry | None`` lookups in the installed snapshot."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], Entry | None] = {}
        self._providers: dict[str, Any] = {}
        """Provider id -> the snapshot's ``Provider`` (``None``: not in the database)."""
        self._snapshot: Any = None
        self.available: bool | None = None
        """Whether ``genai-prices`` is installed (``None`` until the first lookup)."""

    def load(self) -> Any:
        """Load the installed snapshot (once; ``None`` without ``genai-prices``). Blocking:
        call it off the event loop (start-up does)."""
        if self.available is None:
            try:
                from genai_prices.data_snapshot import get_snapshot
            except ImportError:
                self.available = False
            else:
                self._snapshot = get_snapshot()
                self.available = True
        return self._snapshot

    @property
    def version(self) -> str | None:
        """The installed ``genai-prices`` version (the price list's version), or ``None``."""
        if self.load() is None:
            return None
        from importlib.metadata import version

        return version("genai-prices")

    def lookup(self, provider_id: str, model: str) -> Entry | None:
        if len(model) > MAX_MODEL_CHARS:
            return None
        key = (provider_id, model)
        if key in self._cache:
            return self._cache[key]
        entry = None
        provider = self._provider(provider_id)
        if provider is not None:
            # The provider's own matching (aliases, dated names, its fallback providers), as
            # ``find_provider_model`` does, but without the snapshot's lookup caches: they are
            # keyed by the model name and never evicted, and the name may come from requests.
            info = provider.find_model(model, all_providers=self._snapshot.providers)
            if info is not None:
                entry = Entry(info)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[key] = entry
        return entry

    def _provider(self, provider_id: str) -> Any:
        """The snapshot's provider ``provider_id`` (``None`` if unknown or not installed)."""
        try:
            return self._providers[provider_id]
        except KeyError:
            pass
        snapshot = self.load()
        provider = None
        if snapshot is not None:
            with contextlib.suppress(LookupError):
                provider = snapshot.find_provider(None, provider_id, None)
        self._providers[provider_id] = provider
        return provider
