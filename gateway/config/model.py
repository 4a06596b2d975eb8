"""The typed, frozen configuration (contract sections 2 and 9). Pure data; see ``parse.py``.

Durations are seconds (``float``), sizes are bytes (``int``); ``None`` means "no limit" where a
field allows it. Every object is immutable so a config can be shared by all requests and swapped
whole on reload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from gateway.config.pool import PoolConfig

from gateway.config.accounting import Budget, PriceOverride

OnClientAbort = Literal["cancel", "drain", "detach"]
RequestMode = Literal["common", "native"]
UpstreamClient = Literal["auto", "raw", "aiohttp"]
HttpServer = Literal["auto", "raw", "aiohttp"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    heartbeat_interval: float = 15.0
    max_body_bytes: int = 1024 * 1024
    shutdown_timeout: float = 30.0
    request_read_timeout: float = 30.0
    """Deadline to receive the whole request body (slowloris guard)."""
    write_timeout: float = 30.0
    """A client that accepts no bytes for this long is cut (slow-client guard)."""
    max_write_buffer_bytes: int = 256 * 1024
    """Bytes queued toward one client before writes wait for it (backpressure)."""
    max_upstream_event_bytes: int = 4 * 1024 * 1024
    """Largest single upstream message or line accepted by the framing decoders."""
    playground: bool = True
    """Serve the playground page at ``/`` and the route list at ``/v1/routes``."""
    upstream_client: UpstreamClient = "auto"
    """The upstream HTTP client: ``raw`` (``gateway.rawhttp``), ``aiohttp``, or ``auto`` (raw
    when ``httptools`` is installed)."""
    upstream_max_connections: int = 0
    """Open upstream connections at most (the raw client; 0: no cap)."""
    http_server: HttpServer = "auto"
    """The server for the stream ``POST`` requests: ``raw`` (``gateway.httpserver``), ``aiohttp``,
    or ``auto`` (raw when ``httptools`` is installed); every other request is aiohttp's."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    first_event: float = 120.0
    idle: float = 120.0
    total: float = 1800.0


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """One upstream a route may use: the primary, or one of its fallbacks.

    ``options`` are provider-specific, already validated by the adapter's ``parse_options``.
    """

    provider: str
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    timeouts: Timeouts = field(default_factory=Timeouts)
    options: Mapping[str, Any] = field(default_factory=dict)
    deployment: str | None = None
    """The deployment's name when this target is one of a pool's ``upstreams`` (else ``None``)."""

    @property
    def label(self) -> str:
        """A bounded name for metrics: the provider name (the config bounds it)."""
        return self.provider


@dataclass(frozen=True, slots=True)
class TextMarkers:
    created: str = ""
    thinking: str = ""
    clear: str = ""
    end: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class CorsConfig:
    allow_origins: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ("content-type", "authorization", "x-api-key")
    max_age: float = 600.0


@dataclass(frozen=True, slots=True)
class RouteLimits:
    concurrent_streams: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class ResumeConfig:
    """A route's ``resume`` block (contract section 12; parsed in ``config/resume.py``)."""

    enabled: bool = False
    window: float = 600.0
    """Seconds a stream's events stay replayable after its end."""
    max_events: int = 20000
    """Events kept per stream; older ones are dropped (a resume asking for them gets 410)."""
    store: Literal["memory", "redis"] = "memory"


@dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str
    path: str
    format: str
    primary: UpstreamTarget
    fallbacks: tuple[UpstreamTarget, ...] = ()
    on_client_abort: OnClientAbort = "cancel"
    drain_timeout: float = 60.0
    max_stream_duration: float | None = None
    max_output_bytes: int | None = None
    text_markers: TextMarkers = field(default_factory=TextMarkers)
    cors: CorsConfig | None = None
    allow_model_override: bool = False
    request: RequestMode = "common"
    limits: RouteLimits = field(default_factory=RouteLimits)
    resume: ResumeConfig = field(default_factory=ResumeConfig)
    pool: PoolConfig | None = None
    """``upstreams`` + ``balance`` (contract section 11); ``primary`` is its first deployment."""

    @property
    def provider(self) -> str:
        return self.primary.provider

    @property
    def targets(self) -> tuple[UpstreamTarget, ...]:
        """The primary then each fallback, in the order they are tried.

        With a pool: every deployment (config order) then each fallback. The pool decides the
        order among the deployments at run time; a caller without a pool tries them in this order.
        """
        if self.pool is not None:
            return (*self.pool.targets, *self.fallbacks)
        return (self.primary, *self.fallbacks)


@dataclass(frozen=True, slots=True)
class AppKey:
    name: str
    key: str = field(repr=False)
    routes: tuple[str, ...] | None = None
    limits: RouteLimits = field(default_factory=RouteLimits)
    budget: Budget | None = None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    keys: tuple[AppKey, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    on_backend_error: Literal["open", "closed"] = "open"
    max_concurrent_streams: int = 10000
    max_draining_streams: int = 1000
    token_estimate: int = 1000
    """Tokens reserved per request when the request gives no ``max_tokens``."""
    max_resume_buffer_bytes: int = 256 * 1024 * 1024
    """Per process: bytes of resumable-stream frames held in memory (beyond: not resumable)."""
    max_detached_streams: int = 1000
    """Per process: streams kept running after their client left (``on_client_abort: detach``)."""


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """Contract section 14; parsed by ``tracing.py``. ``otlp_endpoint`` None: tracing off."""

    otlp_endpoint: str | None = None
    service_name: str = "llm-gateway"
    sample_ratio: float = 1.0
    capture_content: bool = False
    """Record prompts and output text on spans (off by default: they are user data)."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    server: ServerConfig
    routes: tuple[RouteConfig, ...]
    auth: AuthConfig | None = None
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    pricing: tuple[PriceOverride, ...] = ()
    """``pricing:`` overrides (``config/accounting.py``); they win over the price database."""

    tracing: TracingConfig | None = None

    def route(self, name: str) -> RouteConfig | None:
        for r in self.routes:
            if r.name == name:
                return r
        return None
