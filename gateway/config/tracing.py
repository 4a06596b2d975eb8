"""The ``tracing`` section (contract section 14): OpenTelemetry export of stream spans. Pure.

::

    tracing:
      otlp_endpoint: http://127.0.0.1:4318   # OTLP/HTTP (protobuf); absent: no tracing
      service_name: llm-gateway
      sample_ratio: 1.0                      # 0..1, for streams without a client traceparent
      capture_content: false                 # record prompts and output text (privacy!)

``otlp_endpoint`` is the collector's base URL (``/v1/traces`` is appended when it has no path)
or the full traces URL. A section without ``otlp_endpoint`` is still checked (unknown keys, bad
values) but leaves tracing off.

Tracing needs the optional extra ``[otel]`` (``opentelemetry-sdk`` and the OTLP/HTTP exporter).
A config that turns tracing on without it is a **config error** at load time, so
``gateway check-config`` already says so and the server never starts silently untraced.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from gateway.config import fields as f
from gateway.config.model import TracingConfig

__all__ = ["OTEL_EXTRA_MODULES", "TRACING_SPEC", "otel_available", "parse_tracing"]

OTEL_EXTRA_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http")
"""The modules of the ``[otel]`` extra that tracing needs."""
_FLOAT = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def _ratio(r: f.Reader, v: Any, path: str) -> Any:
    """A number in ``[0, 1]``; a numeric string is accepted (values from ``${VAR}``)."""
    if isinstance(v, str) and _FLOAT.match(v):
        v = float(v)
    if isinstance(v, bool) or not isinstance(v, int | float):
        r.error(path, f"expected a number between 0 and 1, got {f.kind(v)}")
        return f.BAD
    if not 0.0 <= v <= 1.0:  # also rejects NaN
        r.error(path, f"must be between 0 and 1 (got {v})")
        return f.BAD
    return float(v)


TRACING_SPEC: dict[str, f.Conv] = {
    "otlp_endpoint": f.url("http", "https"),
    "service_name": f.string(),
    "sample_ratio": _ratio,
    "capture_content": f.boolean,
}


def otel_available() -> bool:
    """Whether the ``[otel]`` extra is importable (checked without importing it)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in OTEL_EXTRA_MODULES)
    except ImportError:  # a parent package is missing (or cannot be imported)
        return False


def parse_tracing(r: f.Reader, raw: Any, path: str = "tracing") -> TracingConfig | None:
    """The ``tracing`` section, or ``None`` when it is absent or has no ``otlp_endpoint``.

    Unknown keys and bad values are recorded on ``r`` with their paths; a section that turns
    tracing on while the ``[otel]`` extra is missing is an error at ``path.otlp_endpoint``.
    """
    if raw is None:
        return None
    cfg = r.build(TracingConfig, raw, path, TRACING_SPEC)
    if cfg.otlp_endpoint is None:
        return None
    if not otel_available():
        r.error(
            f"{path}.otlp_endpoint",
            "tracing needs the optional OpenTelemetry packages, which are not installed "
            "(pip install 'llm-stream-gateway[otel]'), or remove the 'tracing' section",
        )
        return None
    return cfg
