"""Every benchmark module imports (a renamed gateway name must not break ``make bench``)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench

MODULES = sorted(info.name for info in pkgutil.iter_modules(bench.__path__))


def test_the_bench_has_its_modules() -> None:
    assert {"peers", "scenarios", "resume", "tracing", "profile"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert module.__doc__, f"bench.{name} has no docstring saying what it measures"
