"""What the request decoders of the two OpenAI-compatible front doors share (Chat Completions,
Responses). Pure.

* :func:`reasoning_effort`: an effort the OpenAI SDK may send as the common request's effort;
* :func:`param_of`: the client's field an error names, for the error body's ``param``.
"""

from __future__ import annotations

from gateway.errors import InvalidRequest

EFFORTS: dict[str, str | None] = {
    "none": None,
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}
"""The OpenAI SDK's ``ReasoningEffort`` values, in its order, and the common request's effort for
each (``None``: no reasoning); what the common request has no word for is its highest."""


def reasoning_effort(value: object, field: str) -> str | None:
    """The common request's effort for the client's ``value`` (``None``: leave reasoning out).

    ``field`` is where the client sent it (``reasoning_effort``, ``reasoning.effort``); any
    value not in :data:`EFFORTS` is an :class:`InvalidRequest` naming that field.
    """
    if not isinstance(value, str) or value not in EFFORTS:
        raise InvalidRequest(f"{field}: must be one of {', '.join(EFFORTS)}")
    return EFFORTS[value]


def param_of(exc: InvalidRequest) -> str | None:
    """The client field an :class:`InvalidRequest` names: its message's part before ``": "``
    (a path such as ``input[2].call_id``), or ``None`` when that part is not a field."""
    head, sep, _ = exc.message.partition(": ")
    return head if sep and " " not in head else None
