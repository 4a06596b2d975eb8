"""``@value``: slotted dataclasses at run time, frozen for the type checker."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api

from gateway.values import value


@value
class Pair:
    left: int
    right: str = "r"


def test_a_value_is_a_slotted_dataclass_with_its_fields() -> None:
    pair = Pair(1)
    assert (pair.left, pair.right) == (1, "r")
    assert dataclasses.is_dataclass(pair)
    assert not hasattr(pair, "__dict__")
    with pytest.raises(AttributeError):
        pair.other = 3  # type: ignore[attr-defined]


def test_values_compare_by_fields_and_replace_makes_a_changed_copy() -> None:
    pair = Pair(1, "a")
    assert pair == Pair(1, "a")
    assert pair != Pair(2, "a")
    changed = dataclasses.replace(pair, right="b")
    assert changed == Pair(1, "b")
    assert pair.right == "a"


def test_the_type_checker_rejects_assigning_a_field(tmp_path: Path) -> None:
    """The immutability is mypy's (``dataclass_transform(frozen_default=True)``): an assignment
    to a field fails ``mypy --strict``, while building and reading the record passes."""
    module = tmp_path / "uses_value.py"
    module.write_text(
        textwrap.dedent(
            """
            from gateway.values import value

            @value
            class Pair:
                left: int
                right: str = "r"

            pair = Pair(1)
            total: int = pair.left + len(pair.right)
            pair.left = 2
            """
        )
    )
    options = ["--strict", "--no-incremental", "--follow-imports=silent"]
    out, _, status = mypy_api.run([*options, "--cache-dir", str(tmp_path / "cache"), str(module)])
    assert status == 1, out
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1, out
    assert "uses_value.py:11:" in errors[0] and "read-only" in errors[0], out
