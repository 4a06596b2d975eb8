"""Usage accounting: what a stream cost (contract section 13).

``rates.py`` is the pure arithmetic (and documents the token protocol's usage convention),
``catalog.py`` reads the ``genai-prices`` database, ``pricer.py`` combines it with the config's
``pricing:`` overrides. Budgets, which spend these costs, live in ``gateway/limits/budget.py``.
"""

from __future__ import annotations

from gateway.pricing.catalog import Catalog
from gateway.pricing.pricer import CHARS_PER_TOKEN, Pricer
from gateway.pricing.rates import Counts, Price, Rate, cost, cost_of, counts, flat

__all__ = [
    "CHARS_PER_TOKEN",
    "Catalog",
    "Counts",
    "Price",
    "Pricer",
    "Rate",
    "cost",
    "cost_of",
    "counts",
    "flat",
]
