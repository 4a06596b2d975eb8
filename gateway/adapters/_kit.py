"""The private kit every adapter builds on. Pure; nothing here knows a provider.

Small toolboxes, each used by several adapters (so a fix lands once):

* option tables: ``key -> (default, check)`` validated by :func:`validate_options`;
* lenient upstream JSON: :func:`load_object` parses a message once, then :func:`as_object`,
  :func:`count` and :func:`text` read fields without trusting their types, because real
  streams break closed SDK enums (protocols README section 0.2);
* request pieces: optional fields (:func:`present`), the function-tool shape, tool-call
  arguments as objects, required models, bearer credentials, synthesised tool-call ids;
* the object parameter schema every provider wants (:func:`tool_parameters`; the other
  conversation rules are in :mod:`gateway.adapters._conversation`);
* streamed tool calls: :class:`IndexedToolCalls` (Chat Completions fragments) and
  :class:`BlockToolCalls` (a start, pieces and a stop per block);
* provider-reported failures: :func:`upstream_failure` (raised by native translators) and
  :func:`error_object_event` (the terminal event for a ``{message, code, type}`` error object).
"""

from __future__ import annotations

import difflib
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from gateway import events as ev
from gateway.config.fields import key_path
from gateway.errors import InvalidRequest, UpstreamError, UpstreamProtocolError
from gateway.events import Event
from gateway.jsonutil import loads
from gateway.request import ChatMessage, Tool

# --- option tables ------------------------------------------------------------------------------

Check = Callable[[Any], str | None]
"""An option check: ``None`` when the value is acceptable, else the problem in words."""

OptionTable = Mapping[str, tuple[Any, Check]]
"""An adapter's documented options: key -> (default, check)."""

EFFORT_KEYS = ("minimal", "low", "medium", "high")


def positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "must be a positive integer"
    return None


def non_negative_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "must be a non-negative integer"
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


def typed(kind: type, *choices: Any, nullable: bool = False) -> Check:
    """A value of ``kind`` (optionally one of ``choices``; ``None`` too when ``nullable``).

    ``bool`` is an ``int`` subclass, but an option of one kind never accepts the other.
    """
    name = {bool: "a boolean", str: "a string", int: "an integer"}.get(kind, kind.__name__)
    wrong = f"must be {name} or null" if nullable else f"must be {name}"

    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            return wrong
        if choices and value not in choices:
            return f"must be one of {', '.join(map(str, choices))}"
        return None

    return check


def effort_budgets(value: Any) -> str | None:
    """A mapping ``{minimal|low|medium|high: non-negative int}`` (token budgets per effort)."""
    if not isinstance(value, Mapping):
        return "must be a mapping of effort (minimal, low, medium, high) to a token budget"
    for key, budget in value.items():
        if key not in EFFORT_KEYS:
            return f"unknown effort '{key}' (expected one of {', '.join(EFFORT_KEYS)})"
        if (problem := non_negative_int(budget)) is not None:
            return f"{key}: {problem}"
    return None


def validate_options(
    provider: str, options: Mapping[str, Any], path: str, table: OptionTable
) -> tuple[dict[str, Any], list[str]]:
    """Check ``options`` against ``table``; defaults fill the gaps.

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
            errors.append(f"{key_path(path, key)}: {_unknown_option(provider, key, table)}")
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


def _unknown_option(provider: str, key: object, table: OptionTable) -> str:
    """``unknown option for provider 'x' (did you mean 'speed'?)``, the hint only when one is
    close (the same match as the config's unknown keys)."""
    name = re.split(r"[:\s]", str(key), maxsplit=1)[0]  # ``speed:fast``: YAML without its space
    close = difflib.get_close_matches(name, list(table), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown option for provider '{provider}'{hint}"


# --- lenient upstream JSON ----------------------------------------------------------------------

EMPTY: Mapping[str, Any] = {}


def load_object(data: str, provider: str) -> dict[str, Any]:
    """Parse one upstream JSON payload that must be an object.

    Raises :class:`UpstreamProtocolError` (no payload text in the message: it may hold user data).
    """
    try:
        doc = loads(data)
    except ValueError as exc:
        raise UpstreamProtocolError(f"{provider} sent an event that is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise UpstreamProtocolError(f"{provider} sent an event that is not a JSON object")
    return doc


def maybe_cut(text: str) -> bool:
    """Whether ``text``, which did not parse, may be JSON cut short by EOF (it starts like an
    object or an array). A translator holds such a message back: EOF right after it is
    ``upstream_truncated`` (contract rule 5.1), a further message makes it the protocol error."""
    return text.lstrip().startswith(("{", "["))


def as_object(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty mapping (lenient nested access)."""
    return value if isinstance(value, dict) else EMPTY


def count(value: Any) -> int | None:
    """A token counter, or ``None`` when missing or not an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


class UsageTally:
    """Usage counts merged field by field over one stream (contract section 13).

    Providers split usage over several events (input on the first, output on the last) or
    repeat it cumulatively: :meth:`take` keeps every count ever reported, a later report of a
    count replacing an earlier one, so neither shape loses a figure. Counts that are not
    integers are ignored (lenient upstream data). :meth:`events` is ``[usage]`` or ``[]``.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def take(self, **counts: Any) -> None:
        kept = self.counts
        for key, value in counts.items():
            if value.__class__ is int:  # an int and not a bool (JSON's ints are exact ``int``)
                kept[key] = value

    def events(self) -> list[Event]:
        return [ev.usage(**self.counts)] if self.counts else []


def text(value: Any) -> str | None:
    """A non-empty string, else ``None`` (empty pieces are not content)."""
    return value if isinstance(value, str) and value else None


# --- request pieces -----------------------------------------------------------------------------


def present(**fields: Any) -> dict[str, Any]:
    """The ``fields`` whose value is not ``None``, in order (a request's optional settings)."""
    return {key: value for key, value in fields.items() if value is not None}


def function_tool(tool: Tool, index: int) -> dict[str, Any]:
    """The ``{type: function, function: {name, description?, parameters}}`` tool shape of
    ``tools[index]`` (parameters as :func:`tool_parameters` gives them)."""
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = tool_parameters(tool, index)
    return {"type": "function", "function": function}


def tool_parameters(tool: Tool, index: int) -> dict[str, Any]:
    """The parameters schema of ``tools[index]`` as an object schema.

    A tool's arguments are always a JSON object, and the providers want ``type: object`` at
    the top (Anthropic requires the key itself): a schema without ``type`` gets it; any other
    ``type`` is an :class:`InvalidRequest` naming ``tools[i].parameters.type``.
    """
    schema = tool.parameters
    kind = schema.get("type")
    if kind == "object":
        return schema
    if kind is None:
        return {"type": "object", **schema}
    raise InvalidRequest(
        f"tools[{index}].parameters.type: must be 'object' (a tool's arguments are an object)"
    )


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


def tool_names_by_id(messages: tuple[ChatMessage, ...]) -> dict[str, str]:
    """``tool_call_id -> name`` over every assistant tool call in ``messages``."""
    return {call.id: call.name for m in messages for call in m.tool_calls}


def require_model(model: str | None, provider: str) -> str:
    if not model:
        raise InvalidRequest(f"model: is required (no model configured for provider '{provider}')")
    return model


def native_stream_body(body: Mapping[str, Any], model: str | None) -> dict[str, Any]:
    """A copy of a client's native body with streaming forced on and ``model`` set when given
    (the client's dict is never changed)."""
    native = {**body, "stream": True}
    if model:
        native["model"] = model
    return native


def bearer_headers(api_key: str | None) -> dict[str, str]:
    """``authorization: Bearer <key>`` when a key is configured, else nothing."""
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


def new_call_id() -> str:
    """A tool-call id for a call the upstream sent without one: unique across turns."""
    return "call_" + secrets.token_hex(12)


class IndexedToolCalls:
    """Our tool-call ordinals for fragments keyed by the upstream's ``index`` (Chat Completions).

    A fragment continues the call at its index unless it carries another id (servers that reuse
    index 0 for every call); fragments without an index share one key (servers that send calls
    one after another). Ordinals count calls in order of appearance. One per stream.
    """

    __slots__ = ("_calls", "_next")

    def __init__(self) -> None:
        self._calls: dict[int, tuple[int, str | None]] = {}  # upstream index -> (ordinal, id)
        self._next = 0

    def fragment(
        self, index: int | None, call_id: str | None, arguments: str, out: list[Event]
    ) -> int | None:
        """One fragment. When it continues a call, its ``arguments`` piece (if any) goes to
        ``out`` and the result is ``None``; when it starts one, the result is the new call's
        ordinal and the caller emits the first piece (with id and name)."""
        key = -1 if index is None else index
        known = self._calls.get(key)
        if known is not None and (call_id is None or call_id == known[1]):
            if arguments:
                out.append(ev.tool_call(known[0], arguments))
            return None
        ordinal = self.new()
        self._calls[key] = (ordinal, call_id)
        return ordinal

    def new(self) -> int:
        """The ordinal of a new call that no index identifies (each call comes whole)."""
        ordinal = self._next
        self._next += 1
        return ordinal


class BlockToolCalls:
    """Tool calls streamed as blocks keyed by the upstream's index: a start (id, name), argument
    pieces, a stop (Anthropic, Bedrock, Cohere). One per stream.

    Ordinals count starts in order; pieces for an index no start opened are dropped. A call that
    stops before any argument text (a tool without parameters: these providers send its ``{}``
    as a start placeholder or not at all) gets one ``"{}"`` piece at its stop, so every call's
    arguments join into a JSON string (contract section 5).
    """

    __slots__ = ("_calls", "_next", "_waiting")

    def __init__(self) -> None:
        self._calls: dict[Any, int] = {}  # upstream index -> ordinal
        self._waiting: dict[Any, int] = {}  # the same, for calls without argument text yet
        self._next = 0

    @property
    def waiting(self) -> bool:
        """Some call has no argument text yet (only then does a stop event need reading)."""
        return bool(self._waiting)

    def start(self, index: Any, call_id: Any, name: Any, arguments: str = "") -> Event:
        """The first piece of a new call at ``index``, with its id and name."""
        ordinal = self._next
        self._next += 1
        self._calls[index] = ordinal
        if not arguments:
            self._waiting[index] = ordinal
        return ev.tool_call(ordinal, arguments, id=call_id, name=name)

    def piece(self, index: Any, arguments: Any) -> list[Event]:
        """``[tool_call]`` for a non-empty argument string of the call at ``index``, else ``[]``."""
        ordinal = self._calls.get(index)
        if ordinal is None or not isinstance(arguments, str) or not arguments:
            return []
        self._waiting.pop(index, None)
        return [ev.tool_call(ordinal, arguments)]

    def stop(self, index: Any) -> list[Event]:
        """One ``"{}"`` piece when the call at ``index`` ends with no argument text, else ``[]``."""
        ordinal = self._waiting.pop(index, None)
        return [] if ordinal is None else [ev.tool_call(ordinal, "{}")]


# --- provider-reported failures -----------------------------------------------------------------

DEFAULT_ERROR_MESSAGE = "the upstream reported an error"

RETRYABLE_KINDS = frozenset({"server_error", "rate_limit_exceeded"})
"""Error codes/types of ``{message, code, type}`` error objects worth sending again."""


def upstream_failure(message: Any, kind: Any = None, *, retryable: bool) -> UpstreamError:
    """The error for a failure the provider reported mid-stream (raise it, or make it an event).

    An empty ``message`` becomes :data:`DEFAULT_ERROR_MESSAGE`; ``kind`` (the provider's error
    type) is kept as text in the event's ``type`` when present.
    """
    return UpstreamError(
        str(message) if message else DEFAULT_ERROR_MESSAGE,
        retryable=retryable,
        provider_type=str(kind) if kind else None,
    )


def retryable_status(status: int | None) -> bool:
    """An HTTP status worth retrying: 429 or any 5xx."""
    return status is not None and (status == 429 or status >= 500)


def error_object_event(err: Mapping[str, Any], fallback_kind: str | None = None) -> Event:
    """The terminal ``error`` event for a ``{message, code, type}`` error object.

    The first string of ``code``, ``type`` and ``fallback_kind`` goes to the event's ``type``;
    ``retryable`` follows :data:`RETRYABLE_KINDS`, or a numeric ``code`` of 429 or >= 500 (vLLM
    puts the HTTP status in ``code``).
    """
    code, kind = err.get("code"), err.get("type")
    label = next((k for k in (code, kind, fallback_kind) if isinstance(k, str) and k), None)
    retryable = (
        (isinstance(code, str) and code in RETRYABLE_KINDS)
        or (isinstance(kind, str) and kind in RETRYABLE_KINDS)
        or retryable_status(count(code))
    )
    failure = upstream_failure(text(err.get("message")), label, retryable=retryable)
    return Event(ev.ERROR, failure.to_event_data())
