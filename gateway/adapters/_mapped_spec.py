"""The ``mapped`` adapter's compiled configuration, path lookup and templates. Pure.

``_mapped_config.compile_options`` validates what an operator writes under ``options`` for
``provider: mapped`` and builds these small frozen objects once, at config load: dotted paths
become tuples (``choices.0.delta.content`` -> ``("choices", 0, "delta", "content")``) so the hot
path only walks them. The option reference is ``docs/adapters/mapped.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

Path = tuple[str | int, ...]
MISSING: Final = object()

FRAMINGS = ("sse", "sse+raw", "ndjson")
METHODS = ("POST", "PUT", "PATCH")
SSE_EVENT = "sse_event"
"""``events.type_path`` value that takes the event type from the SSE ``event:`` field."""

BODY_PLACEHOLDERS = frozenset(
    {
        "model", "api_key", "messages", "messages_text", "system", "prompt", "max_tokens",
        "temperature", "top_p", "stop", "tools", "tools_function", "reasoning_effort",
    }
)  # fmt: skip
HEADER_PLACEHOLDERS = frozenset({"api_key", "model"})
PATH_PLACEHOLDERS = frozenset({"model"})
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def lookup(doc: Any, path: Path) -> Any:
    """The value at ``path`` in a decoded JSON document, or :data:`MISSING`. Never raises."""
    for seg in path:
        if isinstance(doc, dict):
            doc = doc.get(seg if isinstance(seg, str) else str(seg), MISSING)
        elif isinstance(doc, list) and isinstance(seg, int) and -len(doc) <= seg < len(doc):
            doc = doc[seg]
        else:
            return MISSING
        if doc is MISSING:
            return MISSING
    return doc


def _present(value: Any) -> bool:
    return value is not None


def first(doc: Any, paths: tuple[Path, ...], accept: Callable[[Any], bool] = _present) -> Any:
    """The first value along ``paths`` that ``accept`` takes (by default: any but null), else
    :data:`MISSING`. Alternatives go on past a value of the wrong type."""
    for path in paths:
        value = lookup(doc, path)
        if value is not MISSING and accept(value):
            return value
    return MISSING


@dataclass(frozen=True, slots=True)
class Rule:
    """Where one kind of content sits: alternative paths, optionally only for some event types."""

    paths: tuple[Path, ...]
    types: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ToolRule:
    list_path: Path
    index_path: Path | None
    id_path: Path | None
    name_path: Path | None
    arguments_path: Path | None
    types: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class UsageRule:
    fields: tuple[tuple[str, tuple[Path, ...]], ...]
    types: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class FinishRule:
    paths: tuple[Path, ...]
    map: Mapping[str, str]
    default: str
    types: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ErrorRule:
    paths: tuple[Path, ...]
    equals: Any = MISSING
    message_paths: tuple[Path, ...] = ()
    type_paths: tuple[Path, ...] = ()
    type: str | None = None
    status_paths: tuple[Path, ...] = ()
    retryable_types: frozenset[str] = frozenset()
    types: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Terminator:
    data: str | None = None
    type: str | None = None
    paths: tuple[Path, ...] = ()
    equals: Any = True
    eof_after_finish: bool = False


@dataclass(frozen=True, slots=True)
class Spec:
    """The compiled ``options`` of one ``mapped`` route target."""

    framing: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: Any
    type_path: Path | None
    type_from_sse: bool
    text: tuple[Rule, ...] = ()
    reasoning: tuple[Rule, ...] = ()
    refusal: tuple[Rule, ...] = ()
    tool_call: ToolRule | None = None
    usage: UsageRule | None = None
    finish: FinishRule | None = None
    errors: tuple[ErrorRule, ...] = ()
    terminator: Terminator = field(default_factory=Terminator)


def placeholders(template: str) -> list[str]:
    """The ``{name}`` placeholders in ``template`` (``{{`` and ``}}`` are literal braces)."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(template) if m.group(1) is not None]


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{name}`` replaced by ``values[name]``; braces unescaped."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            return m.group(0)[0]
        return values[name]

    return _PLACEHOLDER.sub(sub, template)
