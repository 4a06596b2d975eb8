"""The compiled pure core: the modules of :data:`COMPILED` built with mypyc, used when they fit.

The source stays the Python in this package, and it is what runs unless a compiled build of it
is present: ``make`` (``python -m gateway.native_build``) compiles the modules below into
``gateway/_native/`` with mypyc (the mypy project's compiler, as black and mypy ship
themselves), and :func:`install`, called when the package is imported, serves them in place of
their sources only if

* ``GATEWAY_NATIVE`` is not ``0`` (the pure-Python run of the tests sets it, as may an operator),
* the build is for this interpreter (its ``cache_tag``), and
* every ``.py`` file of the package is byte for byte what was compiled (a digest of them all: an
  edit anywhere falls back to the sources until the next build, never runs stale code).

The compiled modules behave as their sources do (``make test`` runs the suite over the build,
then their own tests over the sources). Per 1-token request they take 16 % of the instructions
off, and a token costs 6-19 % less CPU (docs/performance.md, "Compiling the pure core"). Their
functions cannot be patched at run time, so tools that stub parts (``bench.ablate``) run the
sources. :data:`STATUS` says which one this process runs; the startup banner prints it.

This module itself is never compiled: it decides what else is.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
NATIVE_DIR = PACKAGE / "_native"
MANIFEST = "manifest.json"

_PACKAGES = ("adapters", "encoders", "framing")
"""Compiled whole (but their ``__init__``): every provider, client format and wire framing."""
_MODULES = (
    "gateway.events",
    "gateway.idle",
    "gateway.logs",
    "gateway.metrics.record",
    "gateway.metrics.route",
    "gateway.metrics.tally",
    "gateway.pipeline",
    "gateway.request",
    "gateway.stream.deadlines",
    "gateway.stream.meter",
    "gateway.stream.plan",
)
COMPILED: tuple[str, ...] = tuple(
    sorted(
        (
            *_MODULES,
            *(
                f"gateway.{package}.{path.stem}"
                for package in _PACKAGES
                for path in (PACKAGE / package).glob("*.py")
                if path.stem != "__init__"
            ),
        )
    )
)
"""The pure core, in name order: every adapter, client format and wire framing (a route's
provider and format are the operator's choice), the pipeline, events and request parse, and the
per-stream bookkeeping (the metrics, the log line, the deadlines' arithmetic, the meter, the
plan). No module with a coroutine: compiled, the I/O edge took more instructions off but no CPU
time per request, and the client sinks' coroutines kept every answered request alive (mypyc
2.4.1: a reference no collector can find; ``tests/server/test_lifetimes.py`` catches it). Nor
``gateway.jsonutil``, which defines its functions one way or another by what is installed. A
module joins only with its tests passing over both builds."""


def sources_digest(package: Path = PACKAGE) -> str:
    """The SHA-256 of every ``.py`` file under ``package`` (paths and contents, in path order)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


class _NativeFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled build's extension modules by name, before the path finder does."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def check(native_dir: Path = NATIVE_DIR, package: Path = PACKAGE) -> dict[str, Path] | str:
    """The compiled build's files by module name if it may serve, else why not (a sentence)."""
    if os.environ.get("GATEWAY_NATIVE", "1") == "0":
        return "off: GATEWAY_NATIVE=0"
    try:
        manifest = json.loads((native_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return "off: not built (make native)"
    except (OSError, ValueError):
        return "off: the build's manifest is unreadable"
    if manifest.get("cache_tag") != sys.implementation.cache_tag:
        return f"off: built for {manifest.get('cache_tag')}, not {sys.implementation.cache_tag}"
    if manifest.get("digest") != sources_digest(package):
        return "off: the sources changed since the build (make native)"
    files = {name: native_dir / file for name, file in manifest.get("files", {}).items()}
    if not files or not all(file.is_file() for file in files.values()):
        return "off: the build is incomplete (make native)"
    return files


def install() -> str:
    """Serve the compiled build if :func:`check` allows; return the status (``on`` or why not)."""
    found = check()
    if isinstance(found, str):
        return found
    if not any(isinstance(f, _NativeFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _NativeFinder(found))
    return "on"


STATUS = install()
"""``on`` when this process runs the compiled modules, else ``off: <why>``."""
