"""``gateway.native``: the compiled build serves only when it is this interpreter's and the sources'.

The behaviour of the compiled modules is the rest of the suite's business: ``make test`` runs it
over the compiled build, then runs the tests of the compiled modules over their sources
(``GATEWAY_NATIVE=0``), so both builds pass the same tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gateway
from gateway import native
from tests.support.system import REQUIRED

ROOT = Path(__file__).resolve().parent.parent


def _package(tmp_path: Path) -> tuple[Path, Path]:
    """A small package and a 'build' of it whose manifest matches it."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "mod.py").write_text("X = 1\n")
    build = tmp_path / "build"
    build.mkdir()
    (build / "mod.so").write_bytes(b"")
    manifest = {
        "cache_tag": sys.implementation.cache_tag,
        "digest": native.sources_digest(package),
        "files": {"pkg.sub.mod": "mod.so"},
    }
    (build / native.MANIFEST).write_text(json.dumps(manifest))
    return package, build


def test_a_matching_build_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_NATIVE", raising=False)
    package, build = _package(tmp_path)
    assert native.check(build, package) == {"pkg.sub.mod": build / "mod.so"}


def test_an_edited_source_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_NATIVE", raising=False)
    package, build = _package(tmp_path)
    (package / "sub" / "mod.py").write_text("X = 2\n")
    assert native.check(build, package) == "off: the sources changed since the build (make native)"


def test_a_new_source_file_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_NATIVE", raising=False)
    package, build = _package(tmp_path)
    (package / "sub" / "other.py").write_text("")
    assert native.check(build, package) == "off: the sources changed since the build (make native)"


def test_another_interpreters_build_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_NATIVE", raising=False)
    package, build = _package(tmp_path)
    manifest = json.loads((build / native.MANIFEST).read_text())
    (build / native.MANIFEST).write_text(json.dumps({**manifest, "cache_tag": "cpython-399"}))
    assert native.check(build, package) == (
        f"off: built for cpython-399, not {sys.implementation.cache_tag}"
    )


def test_no_build_or_a_missing_file_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_NATIVE", raising=False)
    package, build = _package(tmp_path)
    (build / "mod.so").unlink()
    assert native.check(build, package) == "off: the build is incomplete (make native)"
    assert native.check(tmp_path / "none", package) == "off: not built (make native)"


def test_the_switch_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package, build = _package(tmp_path)
    monkeypatch.setenv("GATEWAY_NATIVE", "0")
    assert native.check(build, package) == "off: GATEWAY_NATIVE=0"


def test_the_compiled_modules_exist_and_the_loader_is_not_one() -> None:
    for name in native.COMPILED:
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name
    assert "gateway.native" not in native.COMPILED
    assert list(native.COMPILED) == sorted(native.COMPILED)


def _module_files(env: dict[str, str]) -> dict[str, str]:
    code = (
        "import importlib, json, gateway\n"
        "from gateway.native import COMPILED\n"
        "print(json.dumps({'status': gateway.NATIVE, **{n: importlib.import_module(n).__file__"
        " for n in COMPILED}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    files: dict[str, str] = json.loads(out.stdout)
    return files


def test_each_process_runs_the_build_it_is_told_to() -> None:
    """This checkout's own build: every compiled module comes from it, or none does."""
    if os.environ.get("GATEWAY_NATIVE") == "0":
        pytest.skip("this run is the sources' (GATEWAY_NATIVE=0)")
    if gateway.NATIVE != "on":
        message = f"no compiled build here ({gateway.NATIVE})"
        if REQUIRED:
            pytest.fail(f"GATEWAY_REQUIRE_SYSTEM_TESTS=1 but {message}")
        pytest.skip(message)
    compiled = _module_files({})
    assert compiled.pop("status") == "on"
    assert all(
        f.startswith(str(native.NATIVE_DIR)) and f.endswith(".so") for f in compiled.values()
    )
    sources = _module_files({"GATEWAY_NATIVE": "0"})
    assert sources.pop("status") == "off: GATEWAY_NATIVE=0"
    assert all(f.endswith(".py") for f in sources.values())
