"""Where the gateway's CPU goes under load: py-spy on a gateway running a benchmark scenario.

py-spy (``pip install py-spy``) samples the pinned gateway process from core 1 while the load
runs, writing collapsed stacks; :func:`summarise_stacks` turns them into the share of samples
per function, both *self* (the leaf frame: where the CPU is spent, kernel time of a syscall
included in the Python frame that made it) and *inclusive* (the frame anywhere on the stack),
and the self share per module (the leaf frame's file: which part of the gateway the time is
spent in, however its functions split it). An SVG flame graph is written beside the raw stacks.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.peers import LOAD_CORE, pinned, start_gateway

_LINE = re.compile(r":\d+\)")
_FILE = re.compile(r"\(([^()]*?)(?::\d+)?\)$")


def _py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).with_name("py-spy"))
        if Path(sys.executable).with_name("py-spy").exists()
        else None
    )


def summarise_stacks(raw: str, top: int = 40) -> dict[str, Any]:
    """Self and inclusive sample shares per function, and self shares per module, from
    py-spy's ``--format raw`` output."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        module = _FILE.search(frames[-1])
        modules[module.group(1) if module else frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    if not total:
        return {"samples": 0, "self": [], "inclusive": [], "modules": []}

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / total, 1)) for f, c in counter.most_common(top)]

    return {
        "samples": total,
        "self": share(own),
        "inclusive": share(anywhere),
        "modules": share(modules),
    }


PROFILED = ("chat-1", "chat-1-rate", "chat-paced", "chat-b2b")
"""Per request at saturation and at the same traffic, per paced token, per token back to back."""


async def profile_gateway(upstream_port: int, seconds: float, out_dir: Path) -> dict[str, Any]:
    """Profile a fresh gateway under each of :data:`PROFILED` for ``seconds``.

    Returns ``load name -> summary`` (see :func:`summarise_stacks`), or ``{"error": ...}``.
    """
    binary = _py_spy()
    if binary is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before any load starts
    loads = {load.name: load for load in scenarios.LOADS}
    out: dict[str, Any] = {}
    for name in PROFILED:
        base = loads[name]
        load = scenarios.Load(**{**base.__dict__, "duration": seconds + 2})
        out[name] = await _profile_one(binary, upstream_port, load, seconds, out_dir)
    return out


async def _profile_one(
    binary: str, upstream_port: int, load: scenarios.Load, seconds: float, out_dir: Path
) -> dict[str, Any]:
    raw_path = out_dir / f"gateway-profile-{load.name}.txt"
    svg_path = out_dir / f"gateway-profile-{load.name}.svg"
    peer = start_gateway(upstream_port)
    assert peer.proc is not None
    try:
        await scenarios.run_load(peer, scenarios.Load("warm-up", "chat", 200, 0, 0, 8, 1.0))
        running = asyncio.ensure_future(scenarios.run_load(peer, load))
        await asyncio.sleep(1.0)
        errors = []
        for fmt, path in (("raw", raw_path), ("flamegraph", svg_path)):
            cmd = [binary, "record", "--pid", str(peer.proc.pid), "--rate", "250"]
            cmd += ["--duration", str(max(1, int(seconds / 2))), "--nonblocking"]
            cmd += ["--format", fmt, "--output", str(path)]
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=pinned(LOAD_CORE),
            )
            _, err = await proc.communicate()
            if proc.returncode:
                errors.append(err.decode(errors="replace")[-500:])
        figures = await running
    finally:
        peer.stop()
    try:
        raw = raw_path.read_text()
    except OSError:
        return {"error": f"py-spy failed: {errors}"}
    summary = summarise_stacks(raw)
    summary.update({"raw": str(raw_path), "svg": str(svg_path), "load": figures})
    return summary
