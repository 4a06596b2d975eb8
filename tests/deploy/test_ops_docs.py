"""The operators' references agree with the code.

- docs/operations.md, "Series": every family a real gateway exports is a row of the table, with
  the labels it really carries, and every row names a family the gateway registers.
- docs/configuration.md: every key the config parser accepts is documented, and the documented
  defaults of ``server`` are the parser's.
"""

from __future__ import annotations

import dataclasses
import re

import aiohttp

from gateway.config import pool, resume, routes, tracing
from gateway.config.model import ServerConfig
from gateway.config.parse import LIMITS_SPEC, SERVER_SPEC
from gateway.config.units import parse_duration, parse_size
from gateway.metrics import Metrics
from gateway.metrics.resume import ResumeMetrics
from gateway.metrics.tracing import TraceMetrics
from tests.support.gateway import REPO, running_gateway

OPERATIONS = (REPO / "docs" / "operations.md").read_text()
CONFIGURATION = (REPO / "docs" / "configuration.md").read_text()
DOC = {
    "auth": {"keys": [{"name": "web", "key": "k", "budget": {"usd": 5, "per": "1d"}}]},
    "routes": [
        {"name": "demo", "provider": "simulated", "options": {"words": 3}},
        {
            "name": "pooled",
            "provider": "simulated",
            "options": {"words": 3},
            "upstreams": [{"name": "east"}, {"name": "west"}],
        },
    ],
}
_SAMPLE = re.compile(r"^(gateway_[a-z0-9_]+?)(_bucket|_sum|_count)?(?:\{([^}]*)\})?\s")


def series_table() -> dict[str, set[str]]:
    """``series`` -> its documented labels, from the table under "### Series"."""
    section = OPERATIONS.split("### Series", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(gateway_[a-z0-9_]+)` \| \w+ \| ([^|]*) \|", section, re.M)
    return {name: {x.strip() for x in labels.split(",")} - {"—", ""} for name, labels in rows}


async def scraped_families() -> dict[str, set[str]]:
    """Family name (as documented: counters with ``_total``) -> label names, from a real scrape
    after a stream by an app key with a budget (so the budget gauge exists)."""
    async with running_gateway(DOC) as gw, aiohttp.ClientSession() as s:
        body = {"messages": [{"role": "user", "content": "Hi"}]}
        headers = {"Authorization": "Bearer k"}
        async with s.post(f"{gw.url}/v1/stream/demo", json=body, headers=headers) as resp:
            assert resp.status == 200
            await resp.read()
        async with s.get(f"{gw.url}/metrics") as resp:
            text = await resp.text()
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = set(re.findall(r"(\w+)=\"", match.group(3) or "")) - {"le"}
            found.setdefault(match.group(1), set()).update(labels)
    return found


async def test_every_exported_family_is_documented_with_its_labels() -> None:
    table = series_table()
    exported = await scraped_families()
    assert "gateway_budget_remaining_usd" in exported
    missing = sorted(set(exported) - set(table))
    assert not missing, f"exported but not in docs/operations.md's series table: {missing}"
    wrong = {n: (table[n], labels) for n, labels in exported.items() if table[n] != labels}
    assert not wrong, f"documented labels differ from the scrape: {wrong}"


def test_every_documented_family_is_registered() -> None:
    metrics = Metrics()
    TraceMetrics(metrics.registry)  # registered only with tracing configured
    ResumeMetrics(metrics.registry)  # registered by the app's resume wiring
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    assert set(series_table()) <= names, set(series_table()) - names


def documented(key: str) -> bool:
    """``key`` (``a.b``) in a table row as `` `a.b` ``, or as a ``b:`` line of a YAML example."""
    leaf = key.rsplit(".", 1)[-1]
    if f"`{key}`" in CONFIGURATION or f"`{key}." in CONFIGURATION:
        return True
    return bool(re.search(rf"^\s*-?\s*{leaf}:", CONFIGURATION, re.M))


def test_every_config_key_is_documented() -> None:
    keys = [
        *(f"{k}" for k in SERVER_SPEC),
        *(f"limits.{k}" for k in LIMITS_SPEC),
        *(f"{k}" for k in routes.ROUTE_KEYS),
        *(f"cors.{k}" for k in routes._CORS),
        *(f"timeouts.{k}" for k in routes._TIMEOUTS),
        *(f"upstream.{k}" for k in routes._UPSTREAM),
        *(f"resume.{k}" for k in resume.RESUME_SPEC),
        *(f"balance.{k}" for k in pool.BALANCE_KEYS),
        *(f"balance.cooldown.{k}" for k in pool._COOLDOWN),
        *(f"upstreams[].{k}" for k in ("name", "weight", "max_concurrent")),
        *(f"tracing.{k}" for k in tracing.TRACING_SPEC),
    ]
    assert [k for k in keys if not documented(k)] == []


def test_server_defaults_are_the_documented_ones() -> None:
    section = CONFIGURATION.split("## `server`", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, re.M))
    assert set(rows) == set(SERVER_SPEC)
    for field in dataclasses.fields(ServerConfig):
        doc, default = rows[field.name], field.default
        if isinstance(default, bool):
            assert doc == str(default).lower(), field.name
        elif field.name.endswith("_bytes"):
            assert parse_size(doc) == default, field.name
        elif isinstance(default, float):
            assert parse_duration(doc) == default, field.name
        else:
            assert doc == str(default), field.name
