"""A real Prometheus scrapes a running gateway that served streams; TTFT, outcomes, the alert
rules and every Grafana panel query are read back through Prometheus' HTTP API.

"The dashboard's queries return data for a gateway that served streams": each panel query, with
its variables substituted ($route -> .*, $__rate_interval -> 1m), returns a non-empty result with
at least one finite value.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

from tests.ops.support import (
    PROM_DIR,
    Prometheus,
    abort_mid_stream,
    load_alerts,
    load_dashboard,
    panel_targets,
    prometheus,
    stream,
    substitute,
)
from tests.support.gateway import running_gateway, wait_for
from tests.support.system import require_binary

FAST = {"first_token_delay": "30ms", "token_interval": "2ms"}
DOC: dict[str, Any] = {
    "routes": [
        {
            "name": "demo",
            "provider": "simulated",
            "options": {"words": 12, "reasoning": True, **FAST},
        },
        {
            "name": "failing",
            "provider": "simulated",
            "options": {"words": 20, "fail_after": 3, **FAST},
        },
        {
            "name": "slow",
            "provider": "simulated",
            "options": {"words": 400, "first_token_delay": "10ms", "token_interval": "20ms"},
        },
        {
            "name": "pooled",
            "provider": "simulated",
            "options": {"words": 6, **FAST},
            "upstreams": [{"name": "east", "weight": 2}, {"name": "west"}],
            "balance": {"strategy": "weighted"},
        },
    ]
}


async def target_up(prom: Prometheus) -> bool:
    data = await prom.api("/api/v1/targets")
    active = data["activeTargets"]
    return bool(active) and all(
        t["health"] == "up" and t["labels"]["job"] == "gateway" for t in active
    )


async def scalar(prom: Prometheus, expr: str) -> float:
    result = await prom.query(expr)
    return float(result[0]["value"][1]) if result else math.nan


async def serve_streams(url: str, port: int) -> None:
    await asyncio.gather(
        *(stream(url, "/v1/stream/demo") for _ in range(3)),
        *(stream(url, "/v1/stream/failing") for _ in range(2)),
        *(stream(url, "/v1/stream/pooled") for _ in range(3)),
        abort_mid_stream(port, "/v1/stream/slow"),
    )
    status, _ = await stream(url, "/v1/stream/demo", body={"messages": []})
    assert status == 400


async def test_prometheus_scrapes_the_gateway_and_every_panel_has_data(tmp_path: Path) -> None:
    binary = require_binary("prometheus")
    async with running_gateway(DOC) as gw:
        target = f"127.0.0.1:{gw.port}"
        with prometheus(binary, tmp_path, target, [PROM_DIR / "alerts.yml"]) as prom:
            # Scraped once before traffic, so rate() sees the counters move from their zeros.
            await prom.wait_until("the gateway target to be up", lambda: target_up(prom), 30)
            await serve_streams(gw.url, gw.port)
            await wait_for(lambda: not gw.state.sessions)

            async def scraped_all() -> bool:
                return await scalar(prom, 'sum(gateway_requests_total{job="gateway"})') == 10

            await prom.wait_until("a scrape after the streams", scraped_all, 15)

            # Outcomes by label, as counted by the gateway.
            outcomes = {
                r["metric"]["outcome"]: float(r["value"][1])
                for r in await prom.query(
                    'sum by (outcome) (gateway_requests_total{job="gateway"}) > 0'
                )
            }
            assert outcomes == {
                "completed": 6,
                "upstream_error": 2,
                "client_abort": 1,
                "rejected": 1,
            }
            aborts = await prom.query("gateway_client_aborts_total > 0")
            assert [a["metric"]["phase"] for a in aborts] == ["mid_stream"]

            # TTFT back from the histogram: the demo route's first token comes after ~30 ms.
            ttft = await scalar(
                prom,
                "histogram_quantile(0.95, sum by (le) ("
                'rate(gateway_time_to_first_token_seconds_bucket{route="demo"}[1m])))',
            )
            assert 0.025 <= ttft <= 0.5, ttft
            mean = await scalar(
                prom,
                'gateway_time_to_first_token_seconds_sum{route="demo"}'
                ' / gateway_time_to_first_token_seconds_count{route="demo"}',
            )
            assert 0.03 <= mean < 0.5, mean

            # Every Grafana panel query returns data.
            empty = []
            for panel, t in panel_targets(load_dashboard()):
                expr = substitute(t["expr"])
                values = [float(r["value"][1]) for r in await prom.query(expr)]
                if not any(math.isfinite(v) for v in values):
                    empty.append((panel["title"], t["refId"], expr, values))
            assert not empty, empty

            # The shipped alert rules load and evaluate in the real server.
            groups = (await prom.api("/api/v1/rules"))["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert {r["name"] for r in rules} == {a["alert"] for a in load_alerts()}
            await prom.wait_until(
                "a rule evaluation",
                lambda: _all_evaluated(prom),
                10,
            )


async def _all_evaluated(prom: Prometheus) -> bool:
    groups = (await prom.api("/api/v1/rules"))["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    for rule in rules:
        assert rule["health"] != "err", rule
    return all(rule["health"] == "ok" for rule in rules)
