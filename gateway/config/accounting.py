"""Accounting config (contract section 13): ``pricing:`` overrides and app-key budgets. Pure.

``pricing`` is a top-level list of per-model prices in USD per million tokens; an entry always
wins over the price database (``gateway/pricing/``)::

    pricing:
      - {model: small-model, input_per_mtok: 0.25, output_per_mtok: 2.0,
         cached_input_per_mtok: 0.025}

``model`` and the input and output prices are required; ``cached_input_per_mtok`` (cache reads)
and ``cache_write_per_mtok`` default to the input price. Prices may be zero (a self-hosted
model), never negative. A model listed twice is an error.

``auth.keys[].budget: {usd: 50, per: 1d}``: the key may spend ``usd`` per period (``1h``, ``1d``,
``7d`` or ``30d``); ``usd`` must be greater than zero. Both are read with the
:class:`~gateway.config.fields.Reader`, so every error names its key path.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

from gateway.config import fields as f
from gateway.config.envsubst import join_path

PERIODS: dict[str, int] = {"1h": 3600, "1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
"""Budget period names -> seconds, aligned to the Unix epoch (see ``limits/budget.py``)."""

PRICE_KEYS = (
    "model",
    "input_per_mtok",
    "output_per_mtok",
    "cached_input_per_mtok",
    "cache_write_per_mtok",
)
BUDGET_KEYS = ("usd", "per")


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """One ``pricing[]`` entry: USD per million tokens for ``model`` (cache prices resolved)."""

    model: str
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float
    cache_write_per_mtok: float


@dataclass(frozen=True, slots=True)
class Budget:
    """``auth.keys[].budget``: at most ``usd`` per period of ``period`` seconds (named ``per``)."""

    usd: float
    per: str

    @property
    def period(self) -> int:
        return PERIODS[self.per]


def _price(*, positive: bool) -> f.Conv:
    """A finite number >= 0 (> 0 when ``positive``); a numeric string is accepted (``${VAR}``)."""

    def conv(r: f.Reader, v: Any, path: str) -> Any:
        if isinstance(v, str):
            with contextlib.suppress(ValueError):
                v = float(v)
        if isinstance(v, bool) or not isinstance(v, int | float):
            r.error(path, f"expected a number, got {f.kind(v)}")
            return f.BAD
        if not math.isfinite(v):
            r.error(path, f"must be a finite number (got {v!r})")
            return f.BAD
        if v < 0 or (positive and v == 0):
            r.error(path, f"must be {'greater than zero' if positive else '>= 0'} (got {v!r})")
            return f.BAD
        return float(v)

    return conv


_PRICE_SPEC: dict[str, f.Conv] = {
    "model": f.string(),
    **{k: _price(positive=False) for k in PRICE_KEYS[1:]},
}


def parse_pricing(r: f.Reader, raw: Any, path: str = "pricing") -> tuple[PriceOverride, ...]:
    """The ``pricing`` list (absent: empty); errors are recorded in ``r``, never raised."""
    items = r.sequence(raw, path)
    if items is None:
        return ()
    out: list[PriceOverride] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(items):
        where = join_path(path, i)
        m = r.mapping(item, where, PRICE_KEYS)
        if m is None:
            continue
        for key in PRICE_KEYS[:3]:
            if key not in m:
                r.error(join_path(where, key), "missing required key")
        got = r.fields(m, where, _PRICE_SPEC)
        if not all(k in got for k in PRICE_KEYS[:3]):
            continue
        model = got["model"]
        if model in seen:
            r.error(f"{where}.model", f"duplicate price for model {model!r} (also {seen[model]})")
            continue
        seen[model] = where
        base = got["input_per_mtok"]
        out.append(
            PriceOverride(
                model=model,
                input_per_mtok=base,
                output_per_mtok=got["output_per_mtok"],
                cached_input_per_mtok=got.get("cached_input_per_mtok", base),
                cache_write_per_mtok=got.get("cache_write_per_mtok", base),
            )
        )
    return tuple(out)


_BUDGET_SPEC: dict[str, f.Conv] = {"usd": _price(positive=True), "per": f.choice(*PERIODS)}


def parse_budget(r: f.Reader, raw: Any, path: str) -> Budget | None:
    """An app key's ``budget`` mapping (``path`` is ``auth.keys[i].budget``); ``None`` if absent
    or invalid (errors recorded in ``r``)."""
    if raw is None:
        return None
    m = r.mapping(raw, path, BUDGET_KEYS)
    if m is None:
        return None
    for key in BUDGET_KEYS:
        if key not in m:
            r.error(join_path(path, key), "missing required key")
    got = r.fields(m, path, _BUDGET_SPEC)
    if "usd" not in got or "per" not in got:
        return None
    return Budget(usd=got["usd"], per=got["per"])
