"""The pricer: a stream's cost in USD from its provider, model and usage, or ``None`` if unknown.

Where a price comes from, first match wins:

1. a ``pricing:`` override in the config for the model (``config/accounting.py``), whatever the
   provider;
2. the price database (``catalog.py``, ``genai-prices``) under the provider id the route's
   adapter declares (:attr:`gateway.adapters.base.Adapter.price_provider`; this module receives
   the mapping and never names a provider itself);
3. nothing: the cost is ``None``, never a guess, and a warning is logged once per
   ``(provider, model)`` (``price_unknown``).

Both lookups are cached per ``(provider, model)``. A stream's meter (``stream/meter.py``) takes
:meth:`Pricer.price` once per upstream attempt and prices the attempt's usage with ``rates.py``;
:meth:`Pricer.cost_usd` does both in one call. :meth:`Pricer.worst_case_usd` prices a request
before it runs, for budget admission (``limits/budget.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.adapters import PRICE_PROVIDERS
from gateway.config.accounting import PriceOverride
from gateway.logs import log_event
from gateway.pricing.catalog import MAX_CACHED, MAX_MODEL_CHARS, Catalog, Entry
from gateway.pricing.rates import Counts, Price, cost, counts, flat

CHARS_PER_TOKEN = 4
"""Input estimate for the worst case: request body bytes / 4 (about 4 characters per token of
English text; JSON syntax and roles add bytes, so this errs on the high side for prose)."""

MAX_WARNED = 256
"""Distinct unknown models warned about; after that one last warning says warnings stop."""


def _override(o: PriceOverride) -> Price:
    return flat(
        o.input_per_mtok, o.output_per_mtok, o.cached_input_per_mtok, o.cache_write_per_mtok
    )


class Pricer:
    """Prices streams. ``price_providers`` maps adapter names to price-database provider ids
    (default: :data:`gateway.adapters.PRICE_PROVIDERS`); ``catalog`` defaults to the installed
    ``genai-prices`` snapshot."""

    def __init__(
        self,
        overrides: Sequence[PriceOverride] = (),
        price_providers: Mapping[str, str | None] | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        if price_providers is None:
            price_providers = PRICE_PROVIDERS
        self.overrides: dict[str, Price] = {o.model: _override(o) for o in overrides}
        self.price_providers = price_providers
        self.catalog = catalog if catalog is not None else Catalog()
        self._entries: dict[tuple[str, str], Price | Entry | None] = {}
        self._warned: set[tuple[str, str]] = set()

    def price(self, provider: str, model: str | None) -> Price | None:
        """The price of ``model`` on the adapter named ``provider`` now, or ``None`` if unknown."""
        if model is None:
            return None
        key = (provider, model)
        try:
            entry = self._entries[key]
        except KeyError:
            entry = self._resolve(provider, model)
            if len(model) > MAX_MODEL_CHARS:  # from a request: not kept (the database has none)
                return entry.price() if isinstance(entry, Entry) else entry
            if len(self._entries) >= MAX_CACHED:
                self._entries.clear()
            self._entries[key] = entry
        if isinstance(entry, Entry):
            return entry.price()
        return entry

    def _resolve(self, provider: str, model: str) -> Price | Entry | None:
        found = self.overrides.get(model)
        if found is not None:
            return found
        provider_id = self.price_providers.get(provider)
        return None if provider_id is None else self.catalog.lookup(provider_id, model)

    def cost_usd(
        self, provider: str, model: str | None, usage: Mapping[str, Any] | None
    ) -> float | None:
        """The cost of one stream in USD, or ``None`` when the usage is incomplete (no input or
        output count) or the model's price is unknown (then warns once per provider and model).
        """
        c = counts(usage)
        if c is None:
            return None
        price = self.price(provider, model)
        if price is None:
            self.warn_unknown(provider, model)
            return None
        return cost(price, c)

    def worst_case_usd(
        self, provider: str, model: str | None, max_tokens: int, body_bytes: int
    ) -> float | None:
        """The most a request may cost: ``max_tokens`` of output (the request's, or the route's
        default) plus ``body_bytes / 4`` tokens of input, each at its highest applicable rate
        (input or cache write, whichever is dearer). ``None`` when the price is unknown."""
        price = self.price(provider, model)
        if price is None:
            return None
        est_input = -(-max(0, body_bytes) // CHARS_PER_TOKEN)
        c = Counts(input=est_input, output=max(0, max_tokens))
        usd = cost(price, c)
        if price.cache_write is not None:
            usd = max(usd, cost(price, Counts(est_input, c.output, 0, est_input)))
        return usd

    def warn_unknown(self, provider: str, model: str | None) -> None:
        """Log ``price_unknown`` for ``(provider, model)``, once."""
        key = (provider, (model or "")[:MAX_MODEL_CHARS])
        if key in self._warned or len(self._warned) > MAX_WARNED:
            return
        self._warned.add(key)
        if len(self._warned) > MAX_WARNED:
            log_event("price_unknown_warnings_stopped", logging.WARNING, limit=MAX_WARNED)
            return
        log_event(
            "price_unknown",
            logging.WARNING,
            provider=provider,
            model=(model or "")[:200],
            database=self.catalog.version or "not installed",
            hint="add the model to 'pricing:' in the config",
        )
