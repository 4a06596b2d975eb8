"""The PromQL in deploy/prometheus/alerts.yml and the Grafana dashboard against a real scrape.

A gateway (one plain route and one pool) serves a stream; its ``/metrics`` text gives every
sample name, the labels each one carries and each histogram's ``le`` bounds. Then:

- every series an expression names is in the scrape, and every label it groups by or matches on
  is one of those series' labels (or one Prometheus adds: ``job``, ``instance``);
- ``rate``/``increase`` only over counters (``_total``) and histogram buckets/sums/counts;
- every ``histogram_quantile(q, ...) > threshold`` of an alert compares with one of that
  histogram's bucket bounds: between two bounds the quantile is a linear interpolation, so an
  alert "p99 > 5ms" over buckets 2.5ms and 10ms fired on reads that all took 3ms.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import yaml

from tests.support.gateway import REPO, running_gateway

ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "gateway-dashboard.json"
ADDED_BY_PROMETHEUS = {"job", "instance", "service"}
DOC = {
    "routes": [
        {"name": "demo", "provider": "simulated", "options": {"words": 3, "token_interval": "1ms"}},
        {
            "name": "pooled",
            "provider": "simulated",
            "options": {"words": 3},
            "upstreams": [{"name": "east"}, {"name": "west"}],
        },
    ]
}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


async def scrape() -> str:
    async with running_gateway(DOC) as gw, aiohttp.ClientSession() as s:
        body = {"messages": [{"role": "user", "content": "Hi"}]}
        async with s.post(f"{gw.url}/v1/stream/demo", json=body) as resp:
            await resp.read()
        async with s.get(f"{gw.url}/metrics") as resp:
            return await resp.text()


def parse(text: str) -> tuple[dict[str, set[str]], dict[str, set[float]]]:
    """Sample name -> its label names; histogram name -> its finite ``le`` bounds."""
    labels: dict[str, set[str]] = {}
    bounds: dict[str, set[float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        name, pairs = match.group(1), dict(_LABEL.findall(match.group(2) or ""))
        labels.setdefault(name, set()).update(pairs)
        if name.endswith("_bucket") and pairs.get("le") not in (None, "+Inf"):
            bounds.setdefault(name.removesuffix("_bucket"), set()).add(float(pairs["le"]))
    return labels, bounds


def alert_exprs() -> dict[str, str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def dashboard_exprs() -> dict[str, str]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    found = {}
    for panel in doc["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found[f"{inner['title']}/{target['refId']}"] = target["expr"]
    return found


def problems(expr: str, labels: dict[str, set[str]]) -> list[str]:
    found = []
    names = set(re.findall(r"\b(gateway_[a-z0-9_]+)\b", expr))
    known: set[str] = set(ADDED_BY_PROMETHEUS)
    for name in names:
        if name not in labels:
            found.append(f"{name} is not in the scrape")
        else:
            known |= labels[name]
    used = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        used |= {label.strip() for label in group.split(",") if label.strip()}
    for selector in re.findall(r"gateway_[a-z0-9_]+\{([^}]*)\}", expr):
        used |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
    found += [f"label {label!r} is on none of {sorted(names)}" for label in used - known]
    for func, name in re.findall(r"\b(rate|increase|irate)\(\s*(gateway_[a-z0-9_]+)", expr):
        if not name.endswith(("_total", "_bucket", "_sum", "_count")):
            found.append(f"{func}() over {name}, which is not a counter")
    return found


async def test_every_expression_names_real_series_and_labels() -> None:
    labels, _ = parse(await scrape())
    exprs = {**alert_exprs(), **dashboard_exprs()}
    assert exprs
    bad = {where: p for where, expr in exprs.items() if (p := problems(expr, labels))}
    assert not bad, bad


def test_the_label_check_catches_a_label_the_gateway_does_not_export() -> None:
    labels = {"gateway_requests_total": {"route", "outcome"}}
    assert problems('sum by (route) (rate(gateway_requests_total{outcome="x"}[5m]))', labels) == []
    assert problems("sum by (model) (rate(gateway_requests_total[5m]))", labels)
    assert problems("rate(gateway_active_streams[5m])", {"gateway_active_streams": {"route"}})


_QUANTILE_ALERT = re.compile(
    r"histogram_quantile\(\s*[\d.]+\s*,.*?\b(gateway_[a-z0-9_]+)_bucket\b.*?\)\s*\)\s*>\s*([\d.eE+-]+)",
    re.DOTALL,
)


async def test_every_quantile_threshold_is_a_bucket_bound() -> None:
    _, bounds = parse(await scrape())
    checked = 0
    for alert, expr in alert_exprs().items():
        for histogram, threshold in _QUANTILE_ALERT.findall(expr):
            assert histogram in bounds, (alert, histogram)
            assert float(threshold) in bounds[histogram], (
                f"{alert}: threshold {threshold} is not a bucket bound of {histogram} "
                f"({sorted(bounds[histogram])}): the quantile is interpolated there"
            )
            checked += 1
    assert checked >= 4  # TTFT, stalls, upstream cancel, overhead
