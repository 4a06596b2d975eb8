"""Pieces shared by the two OpenAI adapters (Responses and Chat Completions). Pure.

Kept private to ``gateway/adapters``: bearer auth, option validation, lenient JSON access and the
mid-stream error event. Upstream data is parsed leniently (unknown fields ignored, missing
counters omitted) because real streams break closed SDK enums (protocols README section 0.2).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway import events as ev
from gateway.errors import UpstreamProtocolError
from gateway.events import Event
from gateway.jsonutil import loads

EMPTY: Mapping[str, Any] = {}

RETRYABLE_KINDS = frozenset({"server_error", "rate_limit_exceeded"})
"""Provider error codes/types for which the same request may succeed when sent again."""

DEFAULT_ERROR_MESSAGE = "the upstream reported an error"


def bearer_headers(api_key: str | None) -> dict[str, str]:
    """``authorization: Bearer <key>`` when a key is configured, else nothing."""
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


def new_call_id() -> str:
    """A tool-call id for a call the upstream sent without one; unique across turns."""
    return "call_" + secrets.token_hex(12)


def load_object(data: str) -> dict[str, Any]:
    """Parse one message's JSON; anything but an object is :class:`UpstreamProtocolError`."""
    try:
        doc = loads(data)
    except ValueError as exc:
        raise UpstreamProtocolError("the upstream sent malformed JSON") from exc
    if not isinstance(doc, dict):
        raise UpstreamProtocolError("the upstream sent a JSON value that is not an object")
    return doc


def obj(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty mapping (lenient nested access)."""
    return value if isinstance(value, dict) else EMPTY


def count(value: Any) -> int | None:
    """A token counter, or ``None`` when missing or not an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def text(value: Any) -> str | None:
    """A non-empty string, else ``None`` (empty pieces are not content)."""
    return value if isinstance(value, str) and value else None


def upstream_error(err: Mapping[str, Any], fallback_kind: Any = None) -> Event:
    """The terminal ``error`` event for a provider-reported failure.

    ``err`` is the provider's error object (``message`` plus ``code`` and/or ``type``). The
    provider's kind goes to ``type`` in the event; ``retryable`` follows :data:`RETRYABLE_KINDS`,
    or a numeric code of 429 or >= 500 (vLLM puts the HTTP status in ``code``).
    """
    message = text(err.get("message")) or DEFAULT_ERROR_MESSAGE
    code, kind = err.get("code"), err.get("type")
    label = next((k for k in (code, kind, fallback_kind) if isinstance(k, str) and k), None)
    status = count(code)
    retryable = bool(
        (isinstance(code, str) and code in RETRYABLE_KINDS)
        or (isinstance(kind, str) and kind in RETRYABLE_KINDS)
        or (status is not None and (status == 429 or status >= 500))
    )
    if label is None:
        return ev.error("upstream_error", message, retryable)
    return ev.error("upstream_error", message, retryable, type=label)


@dataclass(frozen=True, slots=True)
class Option:
    """One documented adapter option: its default, accepted type and, optionally, its values."""

    default: Any
    kind: type
    choices: tuple[Any, ...] | None = None
    nullable: bool = False


def parse_options(
    spec: Mapping[str, Option], options: Mapping[str, Any], path: str, provider: str
) -> tuple[dict[str, Any], list[str]]:
    """Validate ``options`` against ``spec``: defaults filled in, one error per bad key.

    Errors name the key path (``routes.chat.options.include_usage: must be a boolean``).
    """
    parsed = {name: opt.default for name, opt in spec.items()}
    errors: list[str] = []
    for key, value in options.items():
        opt = spec.get(key)
        if opt is None:
            errors.append(f"{path}.{key}: unknown option for provider '{provider}'")
            continue
        if value is None and opt.nullable:
            parsed[key] = None
            continue
        # bool is an int subclass; an option of one kind must not accept the other.
        if not isinstance(value, opt.kind) or (opt.kind is not bool and isinstance(value, bool)):
            errors.append(f"{path}.{key}: must be {_kind_name(opt)}")
        elif opt.choices is not None and value not in opt.choices:
            errors.append(f"{path}.{key}: must be one of {', '.join(map(str, opt.choices))}")
        else:
            parsed[key] = value
    return parsed, errors


def _kind_name(opt: Option) -> str:
    name = {bool: "a boolean", str: "a string", int: "an integer"}.get(opt.kind, opt.kind.__name__)
    return f"{name} or null" if opt.nullable else name
