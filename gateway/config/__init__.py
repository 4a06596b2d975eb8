"""Configuration: the typed frozen model (``model.py``).

The validating loader is ``gateway.config.parse`` (``load_config_file``, ``parse_config``); it is
not imported here because it needs the adapter and encoder registries, which need the model.
"""

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
]
