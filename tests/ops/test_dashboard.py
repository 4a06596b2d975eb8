"""The Grafana dashboard: importable structure, the panels the issue asks for, valid PromQL.

Grafana has no server package here; the structure is checked against what Grafana's importer
needs, every query is parsed by promtool, and test_prometheus_e2e.py runs every query against a
real Prometheus scraping a gateway that served streams.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.ops.support import (
    check_exprs,
    exported_sample_names,
    load_dashboard,
    metric_names,
    panel_targets,
    substitute,
)
from tests.support.system import require_binary

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]


def test_top_level_fields_for_import(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["title"] and re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert "id" not in dashboard or dashboard["id"] is None  # an id would clash on import
    assert dashboard["time"]["from"].startswith("now-")


def test_templating_has_datasource_and_route_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    route = variables["route"]
    assert route["type"] == "query" and route["datasource"] == DATASOURCE
    query = route["query"]["query"] if isinstance(route["query"], dict) else route["query"]
    assert re.fullmatch(r"label_values\(gateway_requests_total(\{.*\})?, route\)", query)
    assert route["includeAll"] and route["multi"] and route["allValue"] == ".*"


def test_panels_have_unique_ids_and_non_overlapping_grid(dashboard: dict[str, Any]) -> None:
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid), panel["title"]
        assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in "hwxy")
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        own = {(grid["x"] + i, grid["y"] + j) for i in range(grid["w"]) for j in range(grid["h"])}
        assert not own & cells, f"panel {panel['title']!r} overlaps another"
        cells |= own


def test_every_query_panel_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    graphs = [p for p in all_panels(dashboard) if p["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel["title"] and panel.get("description"), panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_every_query_filters_by_route_and_uses_rate_interval(dashboard: dict[str, Any]) -> None:
    for panel, target in panel_targets(dashboard):
        expr = target["expr"]
        selectors = re.findall(r"gateway_[a-z_]+\{([^}]*)\}", expr)
        assert selectors and all('route=~"$route"' in s for s in selectors), (panel["title"], expr)
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", (panel["title"], expr)


def test_queries_name_only_series_the_gateway_exports(dashboard: dict[str, Any]) -> None:
    exported = exported_sample_names()
    for panel, target in panel_targets(dashboard):
        names = metric_names(target["expr"])
        assert names, target["expr"]
        assert names <= exported, (panel["title"], names - exported)


REQUIRED = {
    # what the issue asks for -> (series, quantiles the panel must show)
    "throughput": ("gateway_requests_total", ()),
    "outcomes": ("gateway_requests_total", ()),
    "ttft": ("gateway_time_to_first_token_seconds_bucket", ("0.5", "0.95", "0.99")),
    "inter-token p99": ("gateway_inter_token_seconds_bucket", ("0.99",)),
    "max gap": ("gateway_stream_max_gap_seconds_bucket", ()),
    "active streams": ("gateway_active_streams", ()),
    "aborts by phase": ("gateway_client_aborts_total", ()),
    "cancel latency": ("gateway_upstream_cancel_seconds_bucket", ()),
    "tokens by kind": ("gateway_tokens_total", ()),
    "overhead": ("gateway_overhead_seconds_bucket", ("0.5", "0.99")),
    "upstream status": ("gateway_upstream_responses_total", ()),
}


@pytest.mark.parametrize("what", sorted(REQUIRED))
def test_required_panel_is_there(dashboard: dict[str, Any], what: str) -> None:
    series, quantiles = REQUIRED[what]
    exprs = [t["expr"] for _, t in panel_targets(dashboard) if series in t["expr"]]
    assert exprs, f"no panel query uses {series}"
    for q in quantiles:
        assert any(e.startswith(f"histogram_quantile({q},") for e in exprs), (what, q)
    if what == "outcomes":
        assert any("by (outcome)" in e for e in exprs)
    if what == "aborts by phase":
        assert any("by (phase)" in e for e in exprs)
    if what == "tokens by kind":
        assert any("by (kind)" in e for e in exprs)
    if what == "upstream status":
        assert any("by (status_class)" in e for e in exprs)


def test_every_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    exprs = {
        f"dashboard:panel{panel['id']}_{target['refId']}": substitute(target["expr"])
        for panel, target in panel_targets(dashboard)
    }
    result = check_exprs(promtool, exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_the_promql_check_rejects_a_broken_query(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    broken = {"dashboard:broken": "sum by (route) (rate(gateway_requests_total[1m])"}
    assert check_exprs(promtool, broken, tmp_path).returncode != 0


def test_substitute_replaces_every_variable() -> None:
    expr = 'rate(x{route=~"$route", job=~"${job}"}[$__rate_interval]) + y[${__interval}]'
    assert substitute(expr) == 'rate(x{route=~".*", job=~".*"}[1m]) + y[1m]'
