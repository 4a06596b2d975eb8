"""Small helpers shared by the native-protocol adapters (option checks, JSON, tool-call ids). Pure.

Nothing here knows a provider: each adapter passes its own name and option table.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

from gateway.errors import InvalidRequest, UpstreamProtocolError
from gateway.jsonutil import loads

Check = Callable[[Any], str | None]
"""An option check: ``None`` when the value is acceptable, else the problem in words."""

EFFORT_KEYS = ("minimal", "low", "medium", "high")


def positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "must be a positive integer"
    return None


def non_empty_str(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    return None


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def effort_budgets(value: Any) -> str | None:
    """A mapping ``{minimal|low|medium|high: non-negative int}`` (token budgets per effort)."""
    if not isinstance(value, Mapping):
        return "must be a mapping of effort (minimal, low, medium, high) to a token budget"
    for key, budget in value.items():
        if key not in EFFORT_KEYS:
            return f"unknown effort '{key}' (expected one of {', '.join(EFFORT_KEYS)})"
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            return f"{key}: must be a non-negative integer"
    return None


def validate_options(
    provider: str,
    options: Mapping[str, Any],
    path: str,
    table: Mapping[str, tuple[Any, Check]],
) -> tuple[dict[str, Any], list[str]]:
    """Check ``options`` against ``table`` (key -> (default, check)); defaults fill the gaps.

    Mapping defaults (effort budgets) are merged key by key, so a route may override one effort.
    Returns the normalised options and errors prefixed with ``path`` (the base-class contract).
    """
    out = {
        key: (dict(default) if isinstance(default, Mapping) else default)
        for key, (default, _) in table.items()
    }
    errors: list[str] = []
    for key, value in options.items():
        if key not in table:
            errors.append(f"{path}.{key}: unknown option for provider '{provider}'")
            continue
        default, check = table[key]
        problem = check(value)
        if problem is not None:
            errors.append(f"{path}.{key}: {problem}")
        elif isinstance(default, Mapping):
            out[key] = {**default, **value}
        else:
            out[key] = value
    return out, errors


def load_object(data: str, provider: str) -> dict[str, Any]:
    """Parse one upstream JSON payload that must be an object.

    Raises :class:`UpstreamProtocolError` (no payload text in the message: it may hold user data).
    """
    try:
        obj = loads(data)
    except ValueError as exc:
        raise UpstreamProtocolError(f"{provider} sent an event that is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise UpstreamProtocolError(f"{provider} sent an event that is not a JSON object")
    return obj


def arguments_object(arguments: str, path: str) -> dict[str, Any]:
    """A tool call's JSON-string arguments as an object (providers that want ``input``/``args``).

    An empty string is ``{}``. Raises :class:`InvalidRequest` naming ``path`` otherwise.
    """
    if not arguments.strip():
        return {}
    try:
        value = loads(arguments)
    except ValueError:
        raise InvalidRequest(f"{path}: must be a JSON object (as a string)") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{path}: must be a JSON object (as a string)")
    return value


def tool_names_by_id(messages: Any) -> dict[str, str]:
    """``tool_call_id -> name`` over every assistant tool call in ``messages``."""
    return {call.id: call.name for m in messages for call in m.tool_calls}


def new_call_id() -> str:
    """A tool-call id for providers that send none: unique, so ids never collide across turns."""
    return "call_" + secrets.token_hex(12)


def require_model(model: str | None, provider: str) -> str:
    if not model:
        raise InvalidRequest(f"model: is required (no model configured for provider '{provider}')")
    return model
