"""Compile :data:`gateway.native.COMPILED` with mypyc into ``gateway/_native/``.

    python -m gateway.native_build [--jobs N]

``make`` runs it whenever a source changed (``make native``); it needs mypy (the ``dev`` extra:
mypyc comes with it), setuptools and a C compiler with the interpreter's headers. It builds in a
temporary directory, so the package holds no generated C and no extension module beside its
sources: the build lands in ``gateway/_native/`` with a manifest (the interpreter's tag, the
sources' digest, the files by module name) written last, and replaces the previous build whole.
Without a compiler the gateway runs its sources, as before (``gateway.native``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gateway.native import COMPILED, MANIFEST, NATIVE_DIR, PACKAGE, sources_digest

GROUP = "gateway_native"
"""mypyc's name for the build's shared library (``gateway_native__mypyc``)."""


@contextlib.contextmanager
def _inside(path: Path) -> Iterator[None]:
    cwd = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(cwd)


def _module_name(relative: Path) -> str:
    """``gateway/framing/sse.cpython-311-x86_64-linux-gnu.so`` -> ``gateway.framing.sse``."""
    return ".".join((*relative.parent.parts, relative.name.split(".", 1)[0]))


def build(jobs: int = 2, native_dir: Path = NATIVE_DIR) -> Path:
    """Compile, then replace ``native_dir`` with the new build. Returns its manifest's path."""
    from mypyc.build import mypycify  # the dev extra: needed to build, never to run
    from setuptools import setup  # type: ignore[import-untyped]

    digest = sources_digest()  # of the sources as they are when the compiler reads them
    with tempfile.TemporaryDirectory(prefix="gateway-native-") as tmp:
        work = Path(tmp)
        (work / "gateway").symlink_to(PACKAGE, target_is_directory=True)
        paths = ["/".join(name.split(".")) + ".py" for name in COMPILED]
        with _inside(work):  # mypyc names modules by their paths from here; no pyproject here
            extensions = mypycify(paths, opt_level="3", multi_file=True, group_name=GROUP)
            setup(
                name="gateway-native",
                ext_modules=extensions,
                script_args=[
                    "--quiet",
                    "build_ext",
                    f"--parallel={jobs}",
                    "--build-lib=lib",
                    "--build-temp=temp",
                ],
            )
        staged = work / "native"
        staged.mkdir()
        files: dict[str, str] = {}
        for library in sorted((work / "lib").rglob("*.so")):
            relative = library.relative_to(work / "lib")
            (staged / relative.parent).mkdir(parents=True, exist_ok=True)
            shutil.copy2(library, staged / relative)
            files[_module_name(relative)] = str(relative)
        missing = sorted(set(COMPILED) - set(files))
        if missing:
            raise SystemExit(f"native build: no extension module for {', '.join(missing)}")
        manifest = {"cache_tag": sys.implementation.cache_tag, "digest": digest, "files": files}
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        old = native_dir.with_name(native_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if native_dir.exists():
            native_dir.rename(old)
        shutil.copytree(staged, native_dir)
        shutil.rmtree(old, ignore_errors=True)
    return native_dir / MANIFEST


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.native_build", description=__doc__)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    manifest = build(args.jobs)
    print(f"native build: {len(COMPILED)} modules compiled ({manifest})")


if __name__ == "__main__":
    main()
