"""deploy/prometheus: the config and rules load, every alert has unit tests that fire and stay
silent (``promtool test rules``), and each alert is documented with a runbook section."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.support import (
    OPERATIONS_DOC,
    PROM_DIR,
    exported_sample_names,
    load_alerts,
    metric_names,
)
from tests.support.system import require_binary

REQUIRED_ALERTS = {
    "GatewayHighErrorRatio",
    "GatewayTimeToFirstTokenHigh",
    "GatewayStreamStalls",
    "GatewayClientAbortSurge",
    "GatewayNoTraffic",
    "GatewayUpstreamCancelSlow",
    "GatewayOverheadHigh",
}


def promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_alerts())} rules found" in result.stdout


def test_promtool_check_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """Without the traffic floor, the quiet route's single failures would page: the tests say so."""
    text = (PROM_DIR / "alerts.yml").read_text()
    floor = (
        "          and on (job, route)\n"
        "            sum by (job, route) (increase(gateway_requests_total[5m])) >= 10\n"
    )
    assert text.count(floor) == 1
    (tmp_path / "alerts.yml").write_text(text.replace(floor, ""))
    shutil.copy(PROM_DIR / "alerts_test.yml", tmp_path / "alerts_test.yml")
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert 'route="quiet"' in result.stdout + result.stderr


def test_prometheus_config_scrapes_the_gateway_and_loads_the_rules() -> None:
    doc = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    gateway = jobs["gateway"]  # the alerts and the dashboard select job="gateway"
    assert gateway.get("metrics_path", "/metrics") == "/metrics"
    assert gateway["static_configs"][0]["targets"]
    assert gateway["sample_limit"] > 0


def test_required_alerts_are_present() -> None:
    names = {rule["alert"] for rule in load_alerts()}
    assert names >= REQUIRED_ALERTS


@pytest.mark.parametrize("rule", load_alerts(), ids=lambda r: r["alert"])
def test_alert_is_well_formed(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
    assert rule["labels"]["severity"] in ("critical", "warning")
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    anchor = rule["alert"].lower()
    assert annotations["runbook_url"] == f"docs/operations.md#{anchor}"
    assert metric_names(rule["expr"]) <= exported_sample_names()


@pytest.mark.parametrize("rule", load_alerts(), ids=lambda r: r["alert"])
def test_alert_has_a_documented_runbook(rule: dict[str, Any]) -> None:
    if not OPERATIONS_DOC.exists():
        pytest.fail("docs/operations.md is missing")
    headings = re.findall(r"^#{2,4} (.+)$", OPERATIONS_DOC.read_text(), re.MULTILINE)
    assert rule["alert"] in [h.strip().strip("`") for h in headings], rule["alert"]


@pytest.mark.parametrize("rule", load_alerts(), ids=lambda r: r["alert"])
def test_alert_has_firing_and_silent_unit_tests(rule: dict[str, Any]) -> None:
    doc = yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())
    cases = [
        case
        for test in doc["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == rule["alert"]
    ]
    assert any(case["exp_alerts"] for case in cases), "no case where it fires"
    assert any(not case["exp_alerts"] for case in cases), "no case where it stays silent"
