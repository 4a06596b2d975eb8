"""``@value``: an immutable record for the per-request path, frozen by the type checker.

``@dataclass(frozen=True)`` guards its fields at run time with a ``__setattr__`` that raises, so
its ``__init__`` must store every field through ``object.__setattr__``: a builtin call per field
where a plain class stores a slot. For a record built on every request that is the dearer half of
its construction (five fields: 796 against 332 ns on CPython 3.11; the request path builds six
such records, about 30 fields, docs/performance.md).

A class decorated with :func:`value` is a ``slots=True`` dataclass at run time, with the plain
``__init__``, and a frozen dataclass to the type checker (``dataclass_transform(frozen_default=
True)``): assigning a field is a ``mypy --strict`` error, which CI rejects, and ``replace`` makes
changed copies as before. What it gives up: a run-time ``FrozenInstanceError`` for code that
escaped the type checker, and the field-based ``__hash__`` (a value is unhashable: none of them
is a key or a set member). Records built once (the configuration) stay ``frozen=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def value(cls: type[T]) -> type[T]:
    """``cls`` as a slotted dataclass, immutable for the type checker (see the module docs)."""
    return dataclass(slots=True)(cls)


if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*_names: str, **_flags: bool) -> Callable[[type[T]], type[T]]:
        """Read by the compiler only (``gateway.native``): at run time, ``cls`` unchanged."""
        return lambda cls: cls
