"""Counting the objects a test makes without walking the heap of the whole test process.

Late in the suite the process holds millions of objects: one ``gc.collect()`` or one
``gc.get_objects()`` scan took a good part of a second, and a test that waited on a count made
several. Inside :func:`new_objects_only` what existed before is frozen (``gc.freeze``): the
collector and :func:`live` see only the objects made inside.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def new_objects_only(*, collector: bool = False) -> Iterator[None]:
    """Freeze what exists now; inside, :func:`live` counts only objects made since. Without
    ``collector`` the cyclic collector is off too, so that nothing made inside is freed but by
    reference counting (a test that no reference cycle is left)."""
    gc.freeze()
    if not collector:
        gc.disable()
    try:
        yield
    finally:
        if not collector:
            gc.enable()
        gc.unfreeze()


def live(*kinds: type) -> int:
    """How many objects of ``kinds`` made inside :func:`new_objects_only` are alive."""
    return sum(1 for o in gc.get_objects() if isinstance(o, kinds))
