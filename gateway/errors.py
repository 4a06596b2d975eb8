"""The gateway's one exception tree.

Every failure the gateway reports, to a client or in a log, is one of these. Foreign exceptions
(aiohttp, asyncio timeouts, OS errors) are translated into this tree at the I/O edge, once
(``upstream.client_error``, the server's error middleware); the pure core raises only these.

::

    GatewayError                      code            status  retryable
    ├── ConfigError                   (start-up only, never sent to a client)
    ├── RequestError                  client mistakes, always before the stream
    │   ├── InvalidJSON               invalid_json            400
    │   ├── InvalidRequest            invalid_request         400
    │   ├── Unauthorized              unauthorized            401
    │   ├── Forbidden                 forbidden               403
    │   ├── NotFound                  not_found               404
    │   ├── MethodNotAllowed          method_not_allowed      405
    │   ├── Gone                      gone                    410
    │   ├── BodyTooLarge              body_too_large          413
    │   ├── UnsupportedMediaType      unsupported_media_type  415
    │   └── RateLimited               rate_limited            429  yes
    │       └── BudgetExceeded        budget_exceeded         429  yes (at the period's end)
    ├── Unavailable                   unavailable             503  yes
    ├── UpstreamError                 upstream_error          502  (per provider)
    │   ├── UpstreamConnectError      upstream_connect        502  yes
    │   ├── UpstreamStatusError       upstream_error / rate_limited (429)
    │   ├── EarlyError                (the upstream's own error event, before any content)
    │   ├── UpstreamTimeout           upstream_timeout        504  yes
    │   ├── UpstreamTruncated         upstream_truncated      502  yes
    │   └── UpstreamProtocolError     upstream_protocol       502  no
    ├── LimitExceeded                 limit_exceeded          429  (mid-stream, or a held answer)
    ├── ShutdownError                 shutdown                503  yes
    └── InternalError                 internal                500  no

Before the first byte of a stream an error becomes a JSON body ``{"error": {"code", "message"}}``
with ``status``; after it, a terminal ``error`` event ``{"code", "message", "retryable"}``, whose
code is one of contract section 5 rule 5's (``event_code``: ``upstream_connect``, ``rate_limited``
and ``unavailable`` say ``upstream_error`` there).
Messages are written for clients: they never carry a secret, a traceback or request text.
"""

from __future__ import annotations

from typing import Any, ClassVar

DEFAULT_RETRY_AFTER = 1
"""Seconds of ``Retry-After`` on a 429 whose upstream gave none (as the gateway's own caps)."""


class GatewayError(Exception):
    """Base of every gateway error.

    ``code`` is the stable machine-readable name (contract sections 3 and 5), ``status`` the HTTP
    status used when the error happens before the stream starts, ``retryable`` whether the same
    request may succeed if sent again. ``headers`` are extra response headers (``Retry-After``).
    """

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    default_retryable: ClassVar[bool] = False
    event_code: ClassVar[str | None] = None
    """The code of this error's ``error`` event, when not :attr:`error_code`: an event says one
    of contract section 5 rule 5's codes, so an error whose own code names a status
    (``upstream_connect``, ``rate_limited``, ``unavailable``: a failure after a heartbeat
    started the response) says ``upstream_error`` there."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def error_code(self) -> str:
        """The code reported to clients (a subclass may choose it per instance)."""
        return self.code

    @property
    def http_status(self) -> int:
        """The HTTP status reported before the stream (a subclass may choose it per instance)."""
        return self.status

    def to_json(self) -> dict[str, Any]:
        """The pre-stream JSON error body."""
        return {"error": {"code": self.error_code, "message": self.message}}

    def to_event_data(self) -> dict[str, Any]:
        """The data of the terminal ``error`` event."""
        code = self.event_code or self.error_code
        return {"code": code, "message": self.message, "retryable": self.retryable}


class ConfigError(GatewayError):
    """The configuration is invalid. ``errors`` lists every problem, each naming its key path."""

    code = "config"

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class RequestError(GatewayError):
    """The client's request is wrong; always reported before any stream byte."""

    code = "invalid_request"
    status = 400


class InvalidJSON(RequestError):
    code = "invalid_json"


class InvalidRequest(RequestError):
    code = "invalid_request"


class Unauthorized(RequestError):
    code = "unauthorized"
    status = 401


class Forbidden(RequestError):
    """A valid key used where it may not go (a route outside its allow-list, a foreign stream)."""

    code = "forbidden"
    status = 403


class NotFound(RequestError):
    code = "not_found"
    status = 404


class Gone(RequestError):
    """What was asked for existed but was dropped (a resumable stream's range past max_events)."""

    code = "gone"
    status = 410


class MethodNotAllowed(RequestError):
    code = "method_not_allowed"
    status = 405


class BodyTooLarge(RequestError):
    code = "body_too_large"
    status = 413


class UnsupportedMediaType(RequestError):
    code = "unsupported_media_type"
    status = 415


class RateLimited(RequestError):
    code = "rate_limited"
    status = 429
    default_retryable = True


class BudgetExceeded(RateLimited):
    """An app key's spending budget (``auth.keys[].budget``) is used up for the current period.

    ``Retry-After`` is the number of seconds until the period ends (contract section 13).
    """

    code = "budget_exceeded"


class Unavailable(GatewayError):
    code = "unavailable"
    status = 503
    default_retryable = True
    event_code = "upstream_error"  # after a heartbeat: no upstream deployment could serve


class UpstreamError(GatewayError):
    """The upstream failed. Mid-stream, a provider-reported error uses this class directly.

    ``provider_type`` keeps the provider's own error type (``overloaded_error``, ``server_error``)
    so clients can tell kinds apart; it is included in the ``error`` event when set.
    """

    code = "upstream_error"
    status = 502

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        headers: dict[str, str] | None = None,
        provider_type: str | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, headers=headers)
        self.provider_type = provider_type

    def to_event_data(self) -> dict[str, Any]:
        data = super().to_event_data()
        if self.provider_type:
            data["type"] = self.provider_type
        return data


class UpstreamConnectError(UpstreamError):
    code = "upstream_connect"
    default_retryable = True
    event_code = "upstream_error"


class UpstreamStatusError(UpstreamError):
    """The upstream answered non-2xx before streaming. A 429 is reported as ``rate_limited``,
    with the upstream's ``Retry-After`` or else one of :data:`DEFAULT_RETRY_AFTER` seconds
    (contract section 3: a 429 comes with ``Retry-After``)."""

    event_code = "upstream_error"

    def __init__(
        self,
        upstream_status: int,
        message: str,
        *,
        retry_after: float | None = None,
        provider_type: str | None = None,
    ) -> None:
        retryable = upstream_status == 429 or upstream_status >= 500
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, round(retry_after)))
        elif upstream_status == 429:
            headers["Retry-After"] = str(DEFAULT_RETRY_AFTER)
        super().__init__(message, retryable=retryable, headers=headers, provider_type=provider_type)
        self.upstream_status = upstream_status
        self.retry_after = retry_after

    @property
    def error_code(self) -> str:
        return "rate_limited" if self.upstream_status == 429 else "upstream_error"

    @property
    def http_status(self) -> int:
        return 429 if self.upstream_status == 429 else 502


class EarlyError(UpstreamError):
    """An ``error`` event that came before any content: the attempt failed, another may not.

    Reported exactly as the upstream's event said (code, message, retryable) if no other target
    serves.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(str(data.get("message", "")), retryable=bool(data.get("retryable")))
        self.data = data

    @property
    def error_code(self) -> str:
        return str(self.data.get("code", "upstream_error"))

    @property
    def http_status(self) -> int:
        return 504 if self.error_code == "upstream_timeout" else 502

    def to_event_data(self) -> dict[str, Any]:
        return dict(self.data)


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"
    status = 504
    default_retryable = True


class UpstreamTruncated(UpstreamError):
    code = "upstream_truncated"
    default_retryable = True


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol"


class LimitExceeded(GatewayError):
    """A per-stream bound was hit (duration, output bytes, slow client)."""

    code = "limit_exceeded"
    status = 429


class ShutdownError(GatewayError):
    code = "shutdown"
    status = 503
    default_retryable = True


class StreamStopped(GatewayError):
    """``DELETE <route path>/<stream id>`` stopped a resumable stream (contract section 12).

    Its terminal event is ``error{code: stopped, retryable: false}``: the client asked for the
    end, so retrying the same request is not what it wants.
    """

    code = "stopped"
    status = 409


class InternalError(GatewayError):
    code = "internal"
    status = 500


# -- code -> HTTP status, from the tree above ----------------------------------------------------


def _status_table() -> dict[str, int]:
    """Every client-facing code of the tree with its class's status (the first class that has it).

    A subclass that keeps its parent's code keeps its status too (``EarlyError``,
    ``UpstreamStatusError``); :class:`ConfigError` never reaches a client and is left out.
    """
    table: dict[str, int] = {}
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if cls is not ConfigError:
            table.setdefault(cls.code, cls.status)
    return table


_STATUS_BY_CODE = _status_table()


def status_for_code(code: str) -> int:
    """The HTTP status for an error ``code`` when the error becomes a whole response.

    The status its class in the tree declares (``limit_exceeded`` and ``budget_exceeded`` 429,
    ``upstream_timeout`` 504, ...); 500 for a code the tree does not know (a provider's own).
    """
    return _STATUS_BY_CODE.get(code, 500)


# -- credential scrubbing (defence in depth: providers echo keys in their error messages) --------

REDACTED = "[redacted]"
"""What a provider credential becomes in any text the gateway passes on."""

MIN_KEY_CHARS = 4
"""Shorter keys are not redacted: replacing one or two characters would garble every message."""


def redact(text: str, key: str | None) -> str:
    """``text`` with every occurrence of ``key`` replaced by :data:`REDACTED`.

    ``text`` is returned as is (the same object) when there is nothing to replace, so callers can
    test ``redact(t, k) is t`` to skip a copy. A missing key or one under :data:`MIN_KEY_CHARS`
    characters redacts nothing.
    """
    if key and len(key) >= MIN_KEY_CHARS and key in text:
        return text.replace(key, REDACTED)
    return text


def scrub_error_data(data: dict[str, Any], key: str | None) -> dict[str, Any]:
    """An ``error`` event's data with ``key`` out of its ``message``.

    Returns ``data`` itself when the message is clean (or absent), else a new dict: the caller's
    dict is never changed.
    """
    message = data.get("message")
    if isinstance(message, str):
        scrubbed = redact(message, key)
        if scrubbed is not message:
            return {**data, "message": scrubbed}
    return data


def scrub_error(exc: GatewayError, key: str | None) -> GatewayError:
    """``exc`` (changed in place and returned) with ``key`` out of every message it reports.

    That is ``message`` (and ``args``, which logs print) and, for an :class:`EarlyError`, the
    upstream event's ``data["message"]`` that :meth:`EarlyError.to_event_data` sends on.
    """
    message = redact(exc.message, key)
    if message is not exc.message:
        exc.message = message
        exc.args = (message,)
    if isinstance(exc, EarlyError):
        exc.data = scrub_error_data(exc.data, key)
    return exc
