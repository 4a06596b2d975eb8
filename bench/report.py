"""Medians over repetitions, ratios between peers, the markdown tables and the targets of issue 17.

``runs`` (what :mod:`bench.__main__` collects) maps ``peer -> scenario -> [figures per rep]``.
:func:`summarise` turns it into ``peer -> figure -> median``; added time-to-first-token and
added jitter are computed per repetition against ``direct`` measured in the same repetition,
then the median is taken.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

Runs = dict[str, dict[str, list[dict[str, Any]]]]
Summary = dict[str, dict[str, float | None]]

CPU_LOADS = ("chat-b2b", "responses-b2b", "chat-paced", "responses-paced")
LATENCY_LOADS = {"ttft-1": 1, "ttft-64": 64, "ttft-512": 512}

ROWS: tuple[tuple[str, str], ...] = (
    ("cpu_us_per_event/chat-b2b", "CPU µs per event, openai-chat, back to back"),
    ("cpu_us_per_event/responses-b2b", "CPU µs per event, openai-responses, back to back"),
    ("cpu_us_per_event/chat-paced", "CPU µs per event, openai-chat, 5 ms apart"),
    ("cpu_us_per_event/responses-paced", "CPU µs per event, openai-responses, 5 ms apart"),
    ("cpu_us_per_stream/chat-1", "CPU µs per request (1-token streams)"),
    ("cpu_us_per_stream/chat-1-rate", "CPU µs per request, same traffic (~2,000/s for each)"),
    ("cpu_us_per_stream/chat-short", "CPU µs per stream (10-token streams)"),
    ("cpu_us_per_stream/chat-b2b", "CPU µs per stream (200-token streams)"),
    ("events_per_core_s/chat-b2b", "events/s one core carries, openai-chat (1e6 / µs per event)"),
    ("events_per_core_s/responses-b2b", "events/s one core carries, openai-responses"),
    ("streams_per_core_s/chat-1", "streams/s one core carries, 1-token streams"),
    ("streams_per_core_s/chat-short", "streams/s one core carries, 10-token streams"),
    ("events_per_s/chat-b2b", "events/s measured, openai-chat"),
    ("cpu_core_share/chat-b2b", "  proxy core share during that run"),
    ("streams_per_s/chat-short", "streams/s measured, 10-token streams"),
    ("cpu_core_share/chat-short", "  proxy core share during that run"),
    ("added_ttft_p50_ms/ttft-1", "added TTFT p50 ms, 1 stream"),
    ("added_ttft_p99_ms/ttft-1", "added TTFT p99 ms, 1 stream"),
    ("added_ttft_p50_ms/ttft-64", "added TTFT p50 ms, 64 concurrent"),
    ("added_ttft_p99_ms/ttft-64", "added TTFT p99 ms, 64 concurrent"),
    ("added_ttft_p50_ms/ttft-512", "added TTFT p50 ms, 512 concurrent"),
    ("added_ttft_p99_ms/ttft-512", "added TTFT p99 ms, 512 concurrent"),
    ("jitter_p99_ms/ttft-64", "inter-token p99 gap minus upstream gap ms, 64 concurrent"),
    ("added_jitter_p99_ms/ttft-64", "  of which added over direct"),
    ("jitter_p99_ms/ttft-512", "inter-token p99 gap minus upstream gap ms, 512 concurrent"),
    ("added_jitter_p99_ms/ttft-512", "  of which added over direct"),
    ("kib_per_stream/idle", "KiB per open idle stream"),
    ("held_upstream/idle", "idle streams held open"),
    ("p50_ms/abort-flowing", "abort -> upstream close p50 ms, tokens flowing"),
    ("max_ms/abort-flowing", "abort -> upstream close max ms, tokens flowing"),
    ("p50_ms/abort-silent", "abort -> upstream close p50 ms, model silent"),
    ("max_ms/abort-silent", "abort -> upstream close max ms, model silent"),
)
RATIO_PAIRS = (
    ("gateway", "direct"),
    ("gateway", "nginx"),
    ("gateway", "litellm"),
    ("gateway", "portkey"),
    ("nginx", "direct"),
    ("litellm", "nginx"),
    ("portkey", "nginx"),
)


def _median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.median(got), 3) if got else None


def _added(runs: Runs, peer: str, scenario: str, key: str) -> list[float | None]:
    """``key`` minus direct's ``key`` in the same repetition, for each repetition."""
    mine = runs.get(peer, {}).get(scenario, [])
    base = runs.get("direct", {}).get(scenario, [])
    out: list[float | None] = []
    for a, b in zip(mine, base, strict=False):
        x, y = a.get(key), b.get(key)
        out.append(None if x is None or y is None else x - y)
    return out


def summarise(runs: Runs) -> Summary:
    """``peer -> "figure/scenario" -> median over repetitions``."""
    summary: Summary = {}
    for peer, scenarios in runs.items():
        figures: dict[str, float | None] = {}
        for scenario, reps in scenarios.items():
            flat = [_flatten(rep, scenario) for rep in reps]
            for name, sub in {k for f in flat for k in f}:
                figures[f"{name}/{sub}"] = _median([f.get((name, sub)) for f in flat])
        for scenario in LATENCY_LOADS:
            if scenario not in scenarios:
                continue
            for key in ("ttft_p50_ms", "ttft_p99_ms"):
                added = _median(_added(runs, peer, scenario, key))
                figures[f"added_{key}/{scenario}"] = added
            figures[f"added_jitter_p99_ms/{scenario}"] = _median(
                _added(runs, peer, scenario, "gap_p99_ms")
            )
        summary[peer] = figures
    return summary


def _flatten(rep: dict[str, Any], scenario: str) -> dict[tuple[str, str], float | None]:
    """Numeric figures of one run; ``abort`` nests per phase (``abort-flowing``, ...)."""
    out: dict[tuple[str, str], float | None] = {}
    if scenario == "idle" and rep.get("opened") and "kib_per_stream" in rep:
        rep = {
            **rep,
            "kib_per_stream": (rep["rss_after_kib"] - rep["rss_before_kib"]) / rep["opened"],
        }
    for key, value in rep.items():
        if isinstance(value, dict) and scenario == "abort":
            for sub, v in value.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out[(sub, f"abort-{key}")] = v
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[(key, scenario)] = value
    return out


def ratio(summary: Summary, figure: str, a: str, b: str) -> float | None:
    x, y = summary.get(a, {}).get(figure), summary.get(b, {}).get(figure)
    if x is None or y is None or y == 0 or figure.startswith("added_"):
        return None
    return x / y


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def table(summary: Summary, peers: list[str]) -> str:
    """The comparison table: medians per peer, then ratios between peers (``a / b``)."""
    pairs = [(a, b) for a, b in RATIO_PAIRS if a in peers and b in peers]
    head = ["figure (median)", *peers, *(f"{a} / {b}" for a, b in pairs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for figure, label in ROWS:
        values = [summary.get(p, {}).get(figure) for p in peers]
        if all(v is None for v in values):
            continue
        ratios = [_fmt_ratio(ratio(summary, figure, a, b)) for a, b in pairs]
        lines.append("| " + " | ".join([label, *map(_fmt, values), *ratios]) + " |")
    return "\n".join(lines)


# -- targets (issue 17) ------------------------------------------------------------------------


def _get(summary: Summary, peer: str, figure: str) -> float | None:
    return summary.get(peer, {}).get(figure)


def targets(summary: Summary, idle_asked: int) -> list[dict[str, Any]]:
    """Each target of issue 17 with the measured value and whether it is met (None: not measured).

    Every CPU target is a ratio against nginx measured in the same run.
    """
    g: Callable[[str], float | None] = lambda f: _get(summary, "gateway", f)  # noqa: E731
    n: Callable[[str], float | None] = lambda f: _get(summary, "nginx", f)  # noqa: E731
    out = []

    def add(name: str, value: float | None, ok: bool | None, detail: str) -> None:
        out.append({"target": name, "value": value, "met": ok, "detail": detail})

    for figure, how, limit in (
        ("cpu_us_per_stream/chat-1", "CPU/request (1-token streams)", 3.0),
        ("cpu_us_per_stream/chat-1-rate", "CPU/request at the same traffic (~2,000/s)", 3.0),
        ("cpu_us_per_event/chat-paced", "CPU/event, each token its own packet", 2.0),
        ("cpu_us_per_event/chat-b2b", "CPU/event, tokens back to back", 1.3),
    ):
        gc, nc = g(figure), n(figure)
        vs_nginx = gc / nc if gc is not None and nc else None
        add(
            f"{how} ≤ {limit:g}x nginx (openai-chat)",
            vs_nginx,
            _le(vs_nginx, limit),
            f"gateway {_fmt(gc)} µs, nginx {_fmt(nc)} µs: {_fmt_ratio(vs_nginx)}",
        )
    kib, held = g("kib_per_stream/idle"), g("held_upstream/idle")
    enough = held is not None and held >= idle_asked
    add("≤ 16 KiB per open idle stream", kib, _le(kib, 16.0), f"{_fmt(kib)} KiB")
    fds = g("fd_limit/idle")
    why = (
        f" (open-files limit {fds:,.0f}: 2 per stream)" if fds and fds < 2 * idle_asked + 64 else ""
    )
    add(
        f"{idle_asked:,} open streams on one process",
        held,
        enough if held is not None else None,
        f"{_fmt(held)} held{why}",
    )
    for scenario, limit in (("ttft-64", 1.0), ("ttft-512", 5.0)):
        v = g(f"added_ttft_p99_ms/{scenario}")
        add(
            f"added TTFT p99 < {limit:g} ms at {LATENCY_LOADS[scenario]}",
            v,
            _lt(v, limit),
            f"{_fmt(v)} ms over direct",
        )
    for phase in ("flowing", "silent"):
        p50 = g(f"p50_ms/abort-{phase}")
        add(f"abort -> upstream close p50 < 1 ms ({phase})", p50, _lt(p50, 1.0), f"{_fmt(p50)} ms")
    return out


def _le(v: float | None, limit: float) -> bool | None:
    return None if v is None else v <= limit


def _lt(v: float | None, limit: float) -> bool | None:
    return None if v is None else v < limit


def _ge(v: float | None, limit: float) -> bool | None:
    return None if v is None else v >= limit


def targets_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for row in rows:
        met = {True: "met", False: "**missed**", None: "not measured"}[row["met"]]
        lines.append(f"| {row['target']} | {row['detail']} | {met} |")
    return "\n".join(lines)


def adapters_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| adapter | fixture streams | events per pass | CPU µs per event | CPU µs per byte |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['adapter']} | {row['fixtures']} | {row['events']} | "
            f"{row['us_per_event']:.2f} | {row['us_per_byte']:.4f} |"
        )
    return "\n".join(lines)


def profile_tables(profile: dict[str, Any], top: int = 15) -> str:
    """Per profiled load: the functions with the largest self share, and key inclusive shares."""
    parts = []
    for load, summary in profile.items():
        if not isinstance(summary, dict) or "self" not in summary:
            parts.append(f"{load}: {summary}")
            continue
        cpu = summary.get("load", {}).get("cpu_us_per_event")
        parts.append(f"### {load} ({summary['samples']} samples, {_fmt(cpu)} µs per event)\n")
        parts.append("| self % | function | | inclusive % | function |\n|---|---|---|---|---|")
        for (fs, ss), (fi, si) in zip(
            summary["self"][:top], summary["inclusive"][:top], strict=False
        ):
            parts.append(f"| {ss} | `{fs}` | | {si} | `{fi}` |")
        modules = summary.get("modules")
        if modules:
            shares = ", ".join(f"`{m}` {p}" for m, p in modules[:top])
            parts.append(f"\nBy module (self %): {shares}")
        parts.append("")
    return "\n".join(parts)
