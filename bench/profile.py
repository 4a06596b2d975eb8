"""Where the gateway's CPU goes under load: py-spy on a gateway running the chat-b2b scenario.

py-spy (``pip install py-spy``) samples the pinned gateway process from core 1 while the load
runs, writing collapsed stacks; :func:`summarise_stacks` turns them into the share of samples
per function, both *self* (the leaf frame: where the CPU is spent, kernel time of a syscall
included in the Python frame that made it) and *inclusive* (the frame anywhere on the stack).
An SVG flame graph is written beside the raw stacks.
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


def _py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).with_name("py-spy"))
        if Path(sys.executable).with_name("py-spy").exists()
        else None
    )


def summarise_stacks(raw: str, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's ``--format raw`` output."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    if not total:
        return {"samples": 0, "self": [], "inclusive": []}

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / total, 1)) for f, c in counter.most_common(top)]

    return {"samples": total, "self": share(own), "inclusive": share(anywhere)}


async def profile_gateway(upstream_port: int, seconds: float, out_dir: Path) -> dict[str, Any]:
    """Run chat-b2b against a fresh gateway for ``seconds`` under py-spy; the summary."""
    binary = _py_spy()
    if binary is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before the load starts
    raw_path, svg_path = out_dir / "gateway-profile.txt", out_dir / "gateway-profile.svg"
    peer = start_gateway(upstream_port)
    try:
        load = scenarios.Load("profile", "chat", 200, 0, 0, 32, seconds + 2)
        await scenarios.run_load(peer, scenarios.Load("warm-up", "chat", 200, 0, 0, 8, 1.0))
        running = asyncio.ensure_future(scenarios.run_load(peer, load))
        await asyncio.sleep(1.0)
        results = []
        for fmt, path in (("raw", raw_path), ("flamegraph", svg_path)):
            cmd = [binary, "record", "--pid", str(peer.proc.pid) if peer.proc else "0"]
            cmd += ["--duration", str(max(1, int(seconds / 2))), "--rate", "200"]
            cmd += ["--format", fmt, "--output", str(path), "--nonblocking"]
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=pinned(LOAD_CORE),
            )
            _, err = await proc.communicate()
            results.append((proc.returncode, err.decode(errors="replace")[-500:]))
        figures = await running
    finally:
        peer.stop()
    try:
        raw = raw_path.read_text()
    except OSError:
        return {"error": f"py-spy failed: {results}"}
    summary = summarise_stacks(raw)
    summary.update({"raw": str(raw_path), "svg": str(svg_path), "load": figures})
    return summary
