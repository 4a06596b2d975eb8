"""gateway/config/tracing.py: the ``tracing`` section (contract section 14)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from gateway.config import TracingConfig
from gateway.config import tracing as tracing_config
from tests.config.fakes import errors_of, one_route, parse


def doc(**tracing: Any) -> dict[str, Any]:
    return {**one_route(), "tracing": tracing}


def test_absent_section_means_no_tracing() -> None:
    assert parse(one_route()).tracing is None


def test_defaults() -> None:
    cfg = parse(doc(otlp_endpoint="http://127.0.0.1:4318")).tracing
    assert cfg == TracingConfig(
        otlp_endpoint="http://127.0.0.1:4318",
        service_name="llm-gateway",
        sample_ratio=1.0,
        capture_content=False,
    )


def test_every_key_and_values_from_the_environment() -> None:
    env = {"OTLP": "https://collector.internal:4318", "RATIO": "0.25", "CAPTURE": "true"}
    cfg = parse(
        doc(
            otlp_endpoint="${OTLP}",
            service_name="gw-eu",
            sample_ratio="${RATIO}",
            capture_content="${CAPTURE}",
        ),
        env,
    ).tracing
    assert cfg == TracingConfig("https://collector.internal:4318", "gw-eu", 0.25, True)


def test_a_section_without_endpoint_is_checked_but_off() -> None:
    assert parse(doc(service_name="gw", sample_ratio=0)).tracing is None
    assert errors_of(doc(sample_ratio=2)) == [
        "tracing.sample_ratio: must be between 0 and 1 (got 2)"
    ]


@pytest.mark.parametrize(
    ("section", "error"),
    [
        (
            {"otlp_endpont": "http://x:4318"},
            "tracing.otlp_endpont: unknown key (did you mean 'otlp_endpoint'?)",
        ),
        (
            {"otlp_endpoint": "grpc://x:4317"},
            "tracing.otlp_endpoint: invalid URL 'grpc://x:4317' (expected http://... or https://...)",
        ),
        ({"otlp_endpoint": 4318}, "tracing.otlp_endpoint: expected a URL string, got a number"),
        (
            {"otlp_endpoint": "http://x", "sample_ratio": -0.1},
            "tracing.sample_ratio: must be between 0 and 1 (got -0.1)",
        ),
        (
            {"otlp_endpoint": "http://x", "sample_ratio": "half"},
            "tracing.sample_ratio: expected a number between 0 and 1, got a string",
        ),
        (
            {"otlp_endpoint": "http://x", "sample_ratio": True},
            "tracing.sample_ratio: expected a number between 0 and 1, got a boolean",
        ),
        (
            {"otlp_endpoint": "http://x", "capture_content": "yes"},
            "tracing.capture_content: expected true or false, got a string",
        ),
        (
            {"otlp_endpoint": "http://x", "service_name": ""},
            "tracing.service_name: must not be empty",
        ),
    ],
)
def test_bad_values_name_their_path(section: dict[str, Any], error: str) -> None:
    assert errors_of(doc(**section)) == [error]


def test_not_a_mapping() -> None:
    assert errors_of({**one_route(), "tracing": ["x"]}) == [
        "tracing: expected a mapping, got a list"
    ]


def test_missing_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing_config, "otel_available", lambda: False)
    [error] = errors_of(doc(otlp_endpoint="http://127.0.0.1:4318"))
    assert error.startswith("tracing.otlp_endpoint: tracing needs the optional OpenTelemetry")
    assert "[otel]" in error
    # Without an endpoint nothing is needed.
    assert parse(doc(service_name="gw")).tracing is None


def test_the_extra_probe_sees_missing_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracing_config.otel_available()  # the test extra installs it
    monkeypatch.setattr(tracing_config, "OTEL_EXTRA_MODULES", ("opentelemetry.nonexistent_x",))
    assert not tracing_config.otel_available()
    monkeypatch.setattr(tracing_config, "OTEL_EXTRA_MODULES", ("no_such_package_x.sub",))
    assert not tracing_config.otel_available()


def test_gateway_runs_without_opentelemetry_when_tracing_is_off() -> None:
    """With OpenTelemetry made unimportable, the gateway and the off switch still work."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ModuleNotFoundError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import gateway.server, gateway.tracing\n"
        "from gateway.config.parse import load_config\n"
        "cfg = load_config('routes: [{name: d, provider: simulated}]')\n"
        "assert gateway.tracing.from_config(cfg.tracing) is None\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules)\n"
        "try:\n"
        "    load_config('routes: [{name: d, provider: simulated}]\\n"
        "tracing: {otlp_endpoint: http://127.0.0.1:4318}')\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "tracing.otlp_endpoint: tracing needs the optional OpenTelemetry packages" in out.stdout
