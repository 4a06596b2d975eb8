"""Durations and sizes with units, as written in the config (contract section 2). Pure.

``parse_duration``: a number of seconds, or a string ``"250ms"``, ``"15s"``, ``"2m"``, ``"1.5h"``
(a bare numeric string such as ``"15"`` is seconds, so ``${TIMEOUT:-15}`` works).
``parse_size``: an integer of bytes, or a string ``"512B"``, ``"64KB"``, ``"1.5MB"``, ``"1GB"``
(powers of 1000) or ``"64KiB"``, ``"1MiB"``, ``"1GiB"`` (powers of 1024); size units are
case-insensitive and a bare numeric string is bytes.

Both raise ``ValueError`` with a message fit for a config error (the caller prefixes the key
path). Zero is accepted; whether zero makes sense is the caller's decision. Both have a ceiling
(:data:`MAX_SECONDS`, :data:`MAX_BYTES`) far beyond any useful setting: a larger value is an
error here rather than a failure on every request later (a write buffer past a C ``long``, a
Redis expiry past its 64-bit milliseconds).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

_NUMBER = r"([+-]?\d+(?:\.\d+)?|[+-]?\.\d+)"
_DURATION = re.compile(rf"^\s*{_NUMBER}\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(rf"^\s*{_NUMBER}\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
MAX_SECONDS = 10 * 365 * 86_400
"""The longest duration accepted: 10 years (in effect: no limit)."""
MAX_BYTES = 1024**4
"""The largest size accepted: 1 TiB (in effect: no limit)."""
_DURATION_HINT = "use seconds or a number with a unit: ms, s, m, h"
_SIZE_HINT = "use bytes or a number with a unit: B, KB, MB, GB, KiB, MiB, GiB"


def parse_duration(value: Any) -> float:
    """A duration in seconds.

    Input: an ``int``/``float`` of seconds or a string as described in the module docstring.
    Output: seconds as a finite ``float`` (``0 <= seconds <= MAX_SECONDS``).
    Errors: ``ValueError`` for booleans, other types, unknown units, negatives, NaN, infinity
    and durations over :data:`MAX_SECONDS`.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r} ({_DURATION_HINT})")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"invalid duration {value!r} ({_DURATION_HINT})")
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {value!r} (must be finite)")
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r} (must not be negative)")
    if seconds > MAX_SECONDS:
        raise ValueError(f"invalid duration {value!r} (at most {MAX_SECONDS}s: 10 years)")
    return seconds


def parse_size(value: Any) -> int:
    """A size in bytes.

    Input: an ``int`` of bytes or a string as described in the module docstring.
    Output: a whole number of bytes (``0 <= size <= MAX_BYTES``); ``"1.5KB"`` is 1500,
    ``"1.5B"`` is an error.
    Errors: ``ValueError`` for booleans, floats, other types, unknown units, negatives,
    fractions of a byte and sizes over :data:`MAX_BYTES`.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"invalid size {value!r} ({_SIZE_HINT})")
    if isinstance(value, int):
        size = Fraction(value)
    else:
        m = _SIZE.match(value)
        unit = m.group(2).lower() if m else ""
        if m is None or (unit and unit not in _SIZE_UNITS):
            raise ValueError(f"invalid size {value!r} ({_SIZE_HINT})")
        # Fraction keeps "1.1MB" exact where a float would give 1099999.9999...
        size = Fraction(m.group(1)) * _SIZE_UNITS[unit or "b"]
    if size < 0:
        raise ValueError(f"invalid size {value!r} (must not be negative)")
    if size.denominator != 1:
        raise ValueError(f"invalid size {value!r} (not a whole number of bytes)")
    if size > MAX_BYTES:
        raise ValueError(f"invalid size {value!r} (at most 1TiB: {MAX_BYTES} bytes)")
    return int(size)
