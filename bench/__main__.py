"""``python -m bench`` (``make bench``): every peer side by side against one fake upstream.

Per repetition, each peer is started fresh (pinned to core 0), warmed up, run through every
selected scenario, then stopped; the fake upstream and this process (the load client) stay on
core 1. Then the per-adapter translator micro-benchmark runs, the medians and ratios are
printed as markdown, and everything is written to ``bench/results/<timestamp>.json``.

    python -m bench                      # the full run (several minutes)
    python -m bench --quick              # 1 repetition, short windows, 1,000 idle streams
    python -m bench --peers nginx,gateway --scenarios chat-b2b,abort
    python -m bench --profile 15         # also: py-spy profile of the gateway under chat-b2b
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import sysconfig
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import report, scenarios
from bench.adapters import measure as measure_adapters
from bench.peers import (
    DEFAULT_PEERS,
    LAUNCHERS,
    PEERS,
    Peer,
    PeerUnavailable,
    become_load_generator,
    ensure_installed,
    in_turn,
    start_upstream,
)

RESULTS = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 rep, short windows, few idle")
    parser.add_argument(
        "--peers", default=",".join(DEFAULT_PEERS), help=f"subset of {','.join(PEERS)}"
    )
    parser.add_argument(
        "--scenarios", default="all", help=f"'all' or a subset of {','.join(scenarios.SCENARIOS)}"
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--idle", type=int, help="idle streams (default 10000; 1000 --quick)")
    parser.add_argument("--probes", type=int, help="abort probes per phase (default 20)")
    parser.add_argument("--no-install", action="store_true", help="do not install nginx/LiteLLM")
    parser.add_argument("--no-adapters", action="store_true", help="skip the adapter benchmark")
    parser.add_argument("--profile", type=float, default=0, metavar="S", help="py-spy S seconds")
    parser.add_argument("--report", metavar="JSON", help="only re-render a results file's tables")
    return parser


async def run_peer(
    peer: Peer, args: argparse.Namespace, chosen: list[str], rep: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every chosen scenario against one started peer: ``(scenario -> figures, scenario ->
    why it was lost)``. A peer that dies or refuses connections loses the scenarios it cannot
    serve in this repetition, not the whole run."""
    control = ("127.0.0.1", args.upstream_port)
    factor = 0.3 if args.quick else 1.0
    out: dict[str, Any] = {}
    lost: dict[str, str] = {}

    async def attempt(name: str, run: Awaitable[dict[str, Any]]) -> dict[str, Any] | None:
        try:
            got = await run
        except OSError as exc:
            lost[name] = f"{type(exc).__name__}: {exc}"
            log(f"  {peer.name} {name}: lost ({lost[name]})")
            return None
        out[name] = got
        return got

    await scenarios.run_load(peer, scenarios.Load("warm-up", "chat", 200, 0, 0, 8, 1.0))
    for load in scenarios.LOADS:
        if load.name in chosen:
            got = await attempt(load.name, scenarios.run_load(peer, load.scaled(factor)))
            if got is not None:
                log(f"  {peer.name} {load.name}: {_brief(got)}")
    if "abort" in chosen:
        got = await attempt("abort", scenarios.run_abort(peer, control, args.probes))
        if got is not None:
            brief = {k: (v["p50_ms"], v["max_ms"], v["missing"]) for k, v in got.items()}
            log(f"  {peer.name} abort (p50, max, missing): {brief}")
    if "idle" in chosen and rep == 0 and peer.name != "direct":
        budget = 300.0 if peer.name == "litellm" else 120.0
        got = await attempt("idle", scenarios.run_idle(peer, control, args.idle, budget))
        if got is not None:
            log(f"  {peer.name} idle: {_brief(got)}")
    return out, lost


def _brief(figures: dict[str, Any]) -> str:
    keys: tuple[str, ...] = ("events_per_s", "cpu_us_per_event", "cpu_us_per_stream", "ttft_p99_ms")
    keys += ("gap_p99_ms", "failed", "kib_per_stream", "held_upstream")
    return ", ".join(f"{k}={figures[k]}" for k in keys if figures.get(k) is not None)


def gateway_build() -> str:
    """What the gateway peer runs: ``on`` (its compiled pure core) or ``off: <why>`` (the
    sources), as its startup banner says (``gateway.native``), asked of a fresh interpreter."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", "import gateway; print(gateway.NATIVE)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    return done.stdout.strip() or f"unknown: {done.stderr.strip()[-200:]}"


def python_build() -> str:
    """How this interpreter (the one the gateway peer runs on) was built, as far as it can say.

    The build moves every CPU figure of the gateway by 11-13 % (docs/performance.md, "The
    interpreter's build"): ``libpython shared`` or ``static`` (read from this process's mapped
    files, which do not lie), then the optimization flags its ``configure`` was given. A
    distribution may optimize outside ``configure`` (Debian's static ``python3.11`` is built with
    PGO and LTO by its own make target), so an empty flag list does not prove an unoptimized build;
    the executable's path says which build it is.
    """
    maps = Path("/proc/self/maps")
    shared = maps.exists() and "libpython3" in maps.read_text()
    configure = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    flags = [f for f in ("--enable-optimizations", "--with-lto") if f in configure]
    executable = os.path.realpath(sys.executable)
    return f"{executable}: libpython {'shared' if shared else 'static'}; configure {flags}"


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions: dict[str, str | None] = {}
    for dist in ("aiohttp", "uvloop", "orjson"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "gateway_build": gateway_build(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_build": python_build(),
        **versions,
        "cpu_pressure": Path("/proc/pressure/cpu").read_text().splitlines()[0]
        if Path("/proc/pressure/cpu").exists()
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.report:
        return rerender(Path(args.report))
    args.reps = args.reps or (1 if args.quick else 3)
    args.idle = args.idle or (1000 if args.quick else 10_000)
    args.probes = args.probes or (10 if args.quick else 20)
    peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in peers if p not in LAUNCHERS]
    chosen = list(scenarios.SCENARIOS) if args.scenarios == "all" else args.scenarios.split(",")
    bad = [s for s in chosen if s not in scenarios.SCENARIOS]
    if unknown or bad:
        raise SystemExit(f"unknown peers {unknown} or scenarios {bad}")
    become_load_generator()
    unavailable = {} if args.no_install else ensure_installed(peers, log)
    upstream, args.upstream_port = start_upstream()
    started = datetime.now(UTC)
    runs: report.Runs = {}
    lost: list[dict[str, Any]] = []
    try:
        for rep in range(args.reps):
            for name in in_turn(peers):
                if name in unavailable:
                    continue
                log(f"rep {rep + 1}/{args.reps}: {name}")
                try:
                    peer = LAUNCHERS[name](args.upstream_port)
                except PeerUnavailable as exc:
                    unavailable[name] = str(exc)
                    log(f"  {name} unavailable: {exc}")
                    continue
                try:
                    figures, why = asyncio.run(run_peer(peer, args, chosen, rep))
                finally:
                    peer.stop()
                lost += [
                    {"peer": name, "rep": rep, "scenario": s, "error": e} for s, e in why.items()
                ]
                for scenario, value in figures.items():
                    runs.setdefault(name, {}).setdefault(scenario, []).append(value)
        profile = None
        if args.profile and "gateway" in peers:
            from bench.profile import profile_gateway

            log(f"profiling the gateway for {args.profile:g}s (py-spy) ...")
            profile = asyncio.run(profile_gateway(args.upstream_port, args.profile, RESULTS))
    finally:
        upstream.terminate()
        upstream.wait(5)
    adapters = [] if args.no_adapters else measure_adapters(0.2 if args.quick else 1.0)
    return _report(args, argv, peers, runs, unavailable, lost, adapters, profile, started)


def rerender(path: Path) -> int:
    """Recompute summary, targets and tables of a results file (after a change in report.py)."""
    doc = json.loads(path.read_text())
    summary = report.summarise(doc["runs"])
    shown = [p for p in PEERS if p in doc["runs"]]
    goals = report.targets(summary, doc["options"]["idle"])
    doc.update(summary=summary, targets=goals)
    doc["tables"].update(
        comparison=report.table(summary, shown), targets=report.targets_table(goals)
    )
    if doc.get("profile"):
        doc["tables"]["profile"] = report.profile_tables(doc["profile"])
    path.write_text(json.dumps(doc, indent=1, default=str))
    for name, text in doc["tables"].items():
        print(f"\n## {name}\n\n{text}")
    return 0


def _report(
    args: argparse.Namespace,
    argv: list[str] | None,
    peers: list[str],
    runs: report.Runs,
    unavailable: dict[str, str],
    lost: list[dict[str, Any]],
    adapters: list[dict[str, Any]],
    profile: dict[str, Any] | None,
    started: datetime,
) -> int:
    summary = report.summarise(runs)
    shown = [p for p in peers if p in runs]
    goals = report.targets(summary, args.idle)
    print("\n## Comparison (medians over repetitions)\n")
    print(report.table(summary, shown))
    print("\n## Targets (issue 17)\n")
    print(report.targets_table(goals))
    if adapters:
        print("\n## Translator cost per adapter\n")
        print(report.adapters_table(adapters))
    if profile:
        print("\n## Gateway profile (py-spy)\n")
        print(report.profile_tables(profile))
    for name, why in unavailable.items():
        print(f"\n{name}: not measured: {why.splitlines()[0]}")
    for item in lost:
        print(
            f"\n{item['peer']}: {item['scenario']} lost in repetition {item['rep'] + 1}:",
            item["error"],
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    doc = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "options": {k: v for k, v in vars(args).items() if k != "upstream_port"},
        "scenarios": {load.name: load.__dict__ for load in scenarios.LOADS},
        "unavailable": unavailable,
        "lost": lost,
        "runs": runs,
        "summary": summary,
        "targets": goals,
        "adapters": adapters,
        "profile": profile,
        "tables": {
            "comparison": report.table(summary, shown),
            "targets": report.targets_table(goals),
            "adapters": report.adapters_table(adapters) if adapters else "",
            "profile": report.profile_tables(profile) if profile else "",
        },
    }
    path.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
