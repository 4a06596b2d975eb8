"""Configuration: typed frozen model (``model.py``) and the validating loader (``parse.py``)."""

from gateway.config.model import (
    AppKey,
    AuthConfig,
    CorsConfig,
    GatewayConfig,
    LimitsConfig,
    RouteConfig,
    RouteLimits,
    ServerConfig,
    TextMarkers,
    Timeouts,
    TracingConfig,
    UpstreamConfig,
    UpstreamTarget,
)
from gateway.config.parse import load_config, load_config_file, parse_config

__all__ = [
    "AppKey",
    "AuthConfig",
    "CorsConfig",
    "GatewayConfig",
    "LimitsConfig",
    "RouteConfig",
    "RouteLimits",
    "ServerConfig",
    "TextMarkers",
    "Timeouts",
    "TracingConfig",
    "UpstreamConfig",
    "UpstreamTarget",
    "load_config",
    "load_config_file",
    "parse_config",
]
