"""The adapter interface: the whole plug-in seam between a provider and the token protocol. Pure.

An adapter knows one provider's wire format and nothing else. It never does I/O: it *describes*
the upstream request (:class:`UpstreamRequest`, or a :class:`LocalScript` for built-in sources),
and it translates framed upstream messages into token-protocol events through a per-stream
:class:`Translator`. The I/O edge (``upstream.py``) sends the request and feeds the bytes through
the framing decoder named by :attr:`Adapter.framing`; the :class:`~gateway.pipeline.Pipeline`
glues decoder, translator and the protocol guard together.

What the guard does for every adapter, so adapters need not: ``created`` first, ``thinking`` once
when the upstream answers, ``clear`` once before the first visible output, ``end.reason`` forced to
``tool_calls`` when a tool was called, exactly one terminal event, nothing after it.

To add a provider: subclass :class:`Adapter` in ``gateway/adapters/<name>.py``, add one line to
the registry in ``gateway/adapters/__init__.py``, add fixtures to the contract test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from gateway.adapters._kit import OptionTable, validate_options
from gateway.config.model import UpstreamConfig
from gateway.errors import InvalidRequest, UpstreamError, UpstreamStatusError, UpstreamTruncated
from gateway.events import Event
from gateway.framing import Message
from gateway.jsonutil import dumps_kept, loads
from gateway.request import ChatRequest
from gateway.values import mypyc_attr, value


@value
class UpstreamRequest:
    """An HTTP request to send upstream. ``body`` is already encoded."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class LocalScript:
    """A built-in upstream with no network: ``(delay_seconds, bytes)`` chunks played in order.

    The edge sleeps ``delay`` before delivering each chunk; the bytes go through the adapter's
    framing and translator exactly as network bytes would.
    """

    chunks: tuple[tuple[float, bytes], ...]
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@mypyc_attr(allow_interpreted_subclasses=True)  # a test's scripted translator
class Translator(ABC):
    """Per-stream state: framed messages in, token events out.

    ``feed`` is called once per framed message, in order. ``close`` is called once at upstream
    EOF and must return the terminal event if the provider's own terminator was seen but not yet
    turned into one; when the stream ended without the provider's terminator it must return an
    ``error`` event with code ``upstream_truncated`` (the default implementation does that when
    :attr:`finished` is false). Both may raise :class:`~gateway.errors.UpstreamError` subclasses
    (a malformed message is :class:`~gateway.errors.UpstreamProtocolError`); the pipeline turns a
    raised error into the terminal ``error`` event.
    """

    finished: bool = False
    """Set once the provider's terminator (or a terminal error) has been translated."""

    @abstractmethod
    def feed(self, message: Message) -> list[Event]: ...

    def close(self) -> list[Event]:
        if self.finished:
            return []
        raise UpstreamTruncated("the upstream stream ended before its terminator")


def body_bytes(body: Any) -> bytes:
    """An upstream request's JSON body. A client's value the encoder refuses is the client's
    400, not a 500: nested deeper than it goes (orjson: 255 levels; a tool schema, a native
    body), or a string holding a lone UTF-16 surrogate, which UTF-8 cannot carry (the standard
    library's parser, used without orjson, lets ``"\\ud800"`` through)."""
    try:
        return dumps_kept(body)
    except UnicodeEncodeError:  # the standard library's encoder
        raise InvalidRequest(_SURROGATE + " to send upstream") from None
    except TypeError as exc:  # orjson says which
        message = _SURROGATE if "surrogate" in str(exc) else "body: is nested too deeply"
        raise InvalidRequest(message + " to send upstream") from None


_SURROGATE = "body: holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is impossible"


@mypyc_attr(allow_interpreted_subclasses=True)  # tests' fake adapters
class Adapter(ABC):
    """One provider. Instances are built once per route target at config load and shared.

    ``upstream`` is the route's upstream block; ``options`` the result of :meth:`parse_options`.
    """

    name: ClassVar[str]
    """The registry name, used in config (``provider:``) and in the ``created`` event."""
    genai_provider: ClassVar[str] = "_OTHER"
    """``gen_ai.provider.name`` on trace spans (OpenTelemetry GenAI semantic conventions);
    ``_OTHER`` when the conventions list no value for this provider."""
    framing: ClassVar[str] = "sse"
    """Key of :data:`gateway.framing.DECODERS` for this provider's stream."""
    default_base_url: ClassVar[str | None] = None
    needs_upstream: ClassVar[bool] = True
    """False for built-in sources that take no ``upstream`` block."""
    option_table: ClassVar[OptionTable] = {}
    """The documented options, ``key -> (default, check)``, read by :meth:`parse_options`."""
    price_provider: ClassVar[str | None] = None
    native_api: ClassVar[str | None] = None
    """The public API this provider's wire format is (``"messages"``, ``"responses"``,
    ``"chat_completions"``: a front door's name), or ``None``. The front door of that API passes
    requests and event frames through (:mod:`gateway.passthrough`), building the request with
    :meth:`build_native_request` and writing the upstream's own frames to the client."""
    """The provider id in the price database (``genai-prices``) whose prices this adapter's
    models are billed at; ``None``: no known price (only ``pricing:`` overrides apply)."""

    def __init__(self, upstream: UpstreamConfig, options: Mapping[str, Any]) -> None:
        self.upstream = upstream
        self.options = options
        self._headers: Mapping[str, str] | None = None
        """:meth:`common_headers`, built at the first request (see :meth:`post_json`)."""

    @classmethod
    def parse_options(
        cls, options: Mapping[str, Any], path: str
    ) -> tuple[dict[str, Any], list[str]]:
        """Validate the route's ``options`` block at config load.

        Returns the normalised options and a list of errors, each prefixed with ``path``.
        The default checks :attr:`option_table`: defaults fill the gaps (mapping defaults are
        merged key by key), any other key is an error; an empty table accepts no options.
        """
        return validate_options(cls.name, options, path, cls.option_table)

    @property
    def base_url(self) -> str:
        return (self.upstream.base_url or self.default_base_url or "").rstrip("/")

    def model_for(self, request: ChatRequest | None) -> str | None:
        """The model to call: the request's (override allowed by the route) or the route's."""
        if request is not None and request.model:
            return request.model
        return self.upstream.model

    @abstractmethod
    def build_request(self, request: ChatRequest) -> UpstreamRequest | LocalScript:
        """The native streaming request for the common request (streaming forced on)."""

    def build_native_request(self, body: dict[str, Any]) -> UpstreamRequest | LocalScript:
        """Pass-through mode (``request: native``): forward the provider's own body.

        Route-pinned fields (the model, streaming) are applied; unknown fields are preserved.
        Adapters that support it override this; the default refuses.
        """
        raise InvalidRequest(f"provider '{self.name}' does not support request: native")

    @abstractmethod
    def new_translator(self) -> Translator:
        """Fresh per-stream translation state."""

    def status_error(self, status: int, body: bytes, retry_after: float | None) -> UpstreamError:
        """Map a non-2xx upstream answer (before streaming) to a gateway error.

        The default pulls a message from common JSON error shapes
        (``{"error": {"message", "type"}}``, ``{"error": "text"}``, ``{"message": ...}``).
        """
        message, provider_type = _generic_error_message(status, body)
        return UpstreamStatusError(
            status, message, retry_after=retry_after, provider_type=provider_type
        )

    def post_json(self, path: str, body: Any) -> UpstreamRequest:
        """``POST {base_url}{path}`` with ``body`` as JSON and :meth:`common_headers`.

        The headers are built once per adapter (its config never changes: a reload builds new
        adapters) and shared, read-only, by every request; the raw client encodes them once.
        """
        headers = self._headers
        if headers is None:
            headers = self._headers = MappingProxyType(self.common_headers())
        return UpstreamRequest("POST", self.base_url + path, headers, body_bytes(body))

    def auth_headers(self) -> dict[str, str]:
        """Headers that carry the provider credential (never logged, never sent to clients)."""
        return {}

    def common_headers(self) -> dict[str, str]:
        """Content type, credentials, then the route's extra ``upstream.headers``."""
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        headers.update(self.auth_headers())
        headers.update(self.upstream.headers)
        return headers


def _generic_error_message(status: int, body: bytes) -> tuple[str, str | None]:
    fallback = f"upstream answered HTTP {status}"
    try:
        doc = loads(body) if body else None
    except ValueError:
        return fallback, None
    if isinstance(doc, list) and doc:
        doc = doc[0]  # Gemini without alt=sse answers a JSON array
    if not isinstance(doc, dict):
        return fallback, None
    err = doc.get("error", doc)
    if isinstance(err, str):
        return f"{fallback}: {err[:500]}", None
    if isinstance(err, dict):
        message = err.get("message")
        kind = err.get("type") or err.get("status") or err.get("code")
        if isinstance(message, str) and message:
            return f"{fallback}: {message[:500]}", str(kind) if kind is not None else None
    return fallback, None
