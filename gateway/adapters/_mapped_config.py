"""Validation of the ``mapped`` adapter's ``options`` into a compiled :class:`Spec`. Pure.

Every problem is collected (not just the first) with its key path, e.g.
``routes[0].options.events.txt: unknown key (did you mean 'text'?)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.adapters._mapped_spec import (
    BODY_PLACEHOLDERS,
    FRAMINGS,
    HEADER_PLACEHOLDERS,
    METHODS,
    MISSING,
    PATH_PLACEHOLDERS,
    SSE_EVENT,
    ErrorRule,
    FinishRule,
    Path,
    Rule,
    Spec,
    Terminator,
    ToolRule,
    UsageRule,
    placeholders,
)
from gateway.config.fields import key_path, unknown_key_message
from gateway.events import FINISH_REASONS, USAGE_FIELDS

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class _Checker:
    """Collects ``path: problem`` errors while the options are compiled."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, problem: str) -> None:
        self.errors.append(f"{path}: {problem}")

    def keys(self, raw: Any, path: str, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            self.error(path, "must be a mapping")
            return {}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key in known:
                out[key] = value
                continue
            self.error(key_path(path, key), unknown_key_message(key, known))
        return out

    def path(self, raw: Any, where: str) -> Path | None:
        if not isinstance(raw, str) or not raw or any(not s for s in raw.split(".")):
            self.error(where, "must be a dotted path such as choices.0.delta.content")
            return None
        # ASCII digits only: str.isdigit() also accepts '²', which int() rejects.
        return tuple(int(s) if s.isascii() and s.isdigit() else s for s in raw.split("."))

    def paths(self, raw: Any, where: str) -> tuple[Path, ...]:
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            self.error(where, "must be a path or a non-empty list of paths")
        found = (
            self.path(item, f"{where}[{i}]" if raw is items else where)
            for i, item in enumerate(items)
        )
        return tuple(p for p in found if p is not None)

    def string(self, raw: Any, where: str) -> str | None:
        if not isinstance(raw, str) or not raw:
            self.error(where, "must be a non-empty string")
            return None
        return raw

    def types(self, raw: dict[str, Any], where: str, typed: bool) -> frozenset[str] | None:
        if "types" not in raw:
            return None
        value = raw["types"]
        if not typed:
            self.error(f"{where}.types", "needs events.type_path (where the event type is)")
        if (
            not isinstance(value, list)
            or not value  # a rule for no type at all would never apply
            or not all(isinstance(v, str) and v for v in value)
        ):
            self.error(f"{where}.types", "must be a non-empty list of event type names")
            return None
        return frozenset(value)

    def equals(self, raw: dict[str, Any], where: str) -> Any:
        """``raw["equals"]`` (or :data:`MISSING`). ``null`` is refused: a null value at a path
        counts as absent, so it could never match."""
        value = raw.get("equals", MISSING)
        if value is None:
            self.error(f"{where}.equals", "must not be null (a null value counts as absent)")
        return value

    def template(self, raw: str, where: str, allowed: frozenset[str]) -> None:
        for name in placeholders(raw):
            if name not in allowed:
                self.error(
                    where, f"unknown placeholder '{{{name}}}' (known: {', '.join(sorted(allowed))})"
                )


_TOP = ("framing", "request", "events")
_REQUEST = ("method", "path", "headers", "body")
_EVENTS = (
    "type_path", "text", "reasoning", "refusal", "tool_call", "usage", "finish_reason", "error",
    "terminator",
)  # fmt: skip
_RULE = ("path", "types")
_TOOL = ("list_path", "index_path", "id_path", "name_path", "arguments_path", "types")
_USAGE = (*USAGE_FIELDS, "types")
_FINISH = ("path", "map", "default", "types")
_ERROR = (
    "path", "equals", "message_path", "type_path", "type", "status_path", "retryable_types",
    "types",
)  # fmt: skip
_TERMINATOR = ("data", "type", "path", "equals", "eof_after_finish")


def compile_options(options: Mapping[str, Any], path: str) -> tuple[Spec | None, list[str]]:
    """Validate and compile a ``mapped`` options block. Returns ``(spec, [])`` or
    ``(None, errors)`` with every problem found, each prefixed with its key path."""
    c = _Checker()
    top = c.keys(options, path, _TOP)
    framing = top.get("framing", "sse")
    if framing not in FRAMINGS:
        c.error(f"{path}.framing", f"must be one of {', '.join(FRAMINGS)}")
        framing = "sse"  # the rest is checked as for SSE (and typed: the compiled build checks)
    if "request" not in top:
        c.error(f"{path}.request", "is required (method, path, headers, body)")
    if "events" not in top:
        c.error(f"{path}.events", "is required (where text, finish reason ... sit)")
    request = _request(c, top.get("request", {}), f"{path}.request")
    events = _events(c, top.get("events", {}), f"{path}.events", framing)
    if c.errors:
        return None, c.errors
    return Spec(framing, *request, **events), []


def _request(
    c: _Checker, raw: Any, where: str
) -> tuple[str, str, tuple[tuple[str, str], ...], Any]:
    req = c.keys(raw, where, _REQUEST)
    method = req.get("method", "POST")
    if method not in METHODS:
        c.error(f"{where}.method", f"must be one of {', '.join(METHODS)}")
    url_path = req.get("path", "")
    if not isinstance(url_path, str) or (url_path and not url_path.startswith("/")):
        c.error(f"{where}.path", "must be a string starting with / (appended to upstream.base_url)")
        url_path = ""
    elif any(ch in url_path for ch in "\r\n ?#"):
        c.error(f"{where}.path", "must not contain spaces, line breaks, ? or #")
    c.template(url_path, f"{where}.path", PATH_PLACEHOLDERS)
    headers: list[tuple[str, str]] = []
    raw_headers = req.get("headers", {})
    if not isinstance(raw_headers, Mapping):
        c.error(f"{where}.headers", "must be a mapping of header name to value")
        raw_headers = {}
    for name, value in raw_headers.items():
        at = f"{where}.headers.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            c.error(at, "is not a valid header name")
        elif not isinstance(value, str):
            c.error(at, "must be a string")
        elif any(ch in value for ch in "\r\n\x00"):
            c.error(at, "must not contain line breaks (CR, LF) or NUL")
        else:
            c.template(value, at, HEADER_PLACEHOLDERS)
            headers.append((name.lower(), value))
    if "body" not in req:
        c.error(f"{where}.body", "is required (a JSON template)")
    body = req.get("body")
    _check_body(c, body, f"{where}.body")
    return method, url_path, tuple(headers), body


def _check_body(c: _Checker, node: Any, where: str) -> None:
    if isinstance(node, str):
        c.template(node, where, BODY_PLACEHOLDERS)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if not isinstance(key, str):
                c.error(f"{where}.{key}", "keys must be strings")
            _check_body(c, value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_body(c, value, f"{where}[{i}]")
    elif node is not None and not isinstance(node, bool | int | float):
        c.error(where, "must be JSON (mapping, list, string, number, boolean or null)")


def _rules(c: _Checker, raw: Any, where: str, typed: bool) -> tuple[Rule, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        c.error(where, "must be a path, a mapping with path, or a non-empty list of them")
    rules = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]" if isinstance(raw, list) else where
        if isinstance(item, str):  # shorthand: just the path
            rules.append(Rule(c.paths(item, at)))
            continue
        if not isinstance(item, Mapping):
            c.error(at, "must be a dotted path or a mapping with path (and types)")
            continue
        rule = c.keys(item, at, _RULE)
        if "path" not in rule:
            c.error(f"{at}.path", "is required")
            continue
        rules.append(Rule(c.paths(rule["path"], f"{at}.path"), c.types(rule, at, typed)))
    return tuple(rules)


def _events(c: _Checker, raw: Any, where: str, framing: str) -> dict[str, Any]:
    ev = c.keys(raw, where, _EVENTS)
    out: dict[str, Any] = {"type_path": None, "type_from_sse": False}
    if "type_path" in ev:
        if ev["type_path"] == SSE_EVENT:
            out["type_from_sse"] = True
            if framing == "ndjson":
                c.error(
                    f"{where}.type_path",
                    f"{SSE_EVENT} needs framing sse or sse+raw (ndjson has no event names)",
                )
        else:
            out["type_path"] = c.path(ev["type_path"], f"{where}.type_path")
    typed = "type_path" in ev
    for key in ("text", "reasoning", "refusal"):
        if key in ev:
            out[key] = _rules(c, ev[key], f"{where}.{key}", typed)
    if "tool_call" in ev:
        out["tool_call"] = _tool(c, ev["tool_call"], f"{where}.tool_call", typed)
    if "usage" in ev:
        out["usage"] = _usage(c, ev["usage"], f"{where}.usage", typed)
    if "finish_reason" in ev:
        out["finish"] = _finish(c, ev["finish_reason"], f"{where}.finish_reason", typed)
    if "error" in ev:
        raw_errors = ev["error"] if isinstance(ev["error"], list) else [ev["error"]]
        if not raw_errors:
            c.error(f"{where}.error", "must be a rule or a non-empty list of rules")
        out["errors"] = tuple(
            _error(
                c,
                item,
                f"{where}.error[{i}]" if isinstance(ev["error"], list) else f"{where}.error",
                typed,
            )
            for i, item in enumerate(raw_errors)
        )
    if not any(k in ev for k in ("text", "reasoning", "tool_call")):
        c.error(where, "maps nothing: give at least one of text, reasoning, tool_call")
    if "terminator" not in ev:
        c.error(f"{where}.terminator", "is required: how the upstream says the stream is complete")
    else:
        finish = "finish_reason" in ev
        out["terminator"] = _terminator(c, ev["terminator"], f"{where}.terminator", typed, finish)
    return out


def _tool(c: _Checker, raw: Any, where: str, typed: bool) -> ToolRule:
    t = c.keys(raw, where, _TOOL)
    if "list_path" not in t:
        c.error(f"{where}.list_path", "is required (where the list of tool calls sits)")

    def opt(key: str) -> Path | None:
        return c.path(t[key], f"{where}.{key}") if key in t else None

    return ToolRule(
        opt("list_path") or (),
        opt("index_path"),
        opt("id_path"),
        opt("name_path"),
        opt("arguments_path"),
        c.types(t, where, typed),
    )


def _usage(c: _Checker, raw: Any, where: str, typed: bool) -> UsageRule:
    u = c.keys(raw, where, _USAGE)
    fields = tuple(
        (key, c.paths(value, f"{where}.{key}")) for key, value in u.items() if key != "types"
    )
    if not fields:
        c.error(where, "maps no counter (input_tokens, output_tokens, ...)")
    return UsageRule(fields, c.types(u, where, typed))


def _finish(c: _Checker, raw: Any, where: str, typed: bool) -> FinishRule:
    f = c.keys(raw, where, _FINISH)
    if "path" not in f:
        c.error(f"{where}.path", "is required")
    mapping = f.get("map", {})
    if not isinstance(mapping, Mapping):
        c.error(f"{where}.map", "must be a mapping of upstream value to reason")
        mapping = {}
    for native, reason in mapping.items():
        if reason not in FINISH_REASONS:
            c.error(f"{where}.map.{native}", f"must be one of {', '.join(FINISH_REASONS)}")
    default = f.get("default", "other")
    if default not in FINISH_REASONS:
        c.error(f"{where}.default", f"must be one of {', '.join(FINISH_REASONS)}")
    paths = c.paths(f["path"], f"{where}.path") if "path" in f else ()
    return FinishRule(
        paths, {str(k): v for k, v in mapping.items()}, default, c.types(f, where, typed)
    )


def _error(c: _Checker, raw: Any, where: str, typed: bool) -> ErrorRule:
    e = c.keys(raw, where, _ERROR)
    if "path" not in e:
        c.error(f"{where}.path", "is required (the field whose presence means an error)")
    retryable = e.get("retryable_types", [])
    if not isinstance(retryable, list) or not all(isinstance(v, str) for v in retryable):
        c.error(f"{where}.retryable_types", "must be a list of error type names")
        retryable = []

    def paths(key: str) -> tuple[Path, ...]:
        return c.paths(e[key], f"{where}.{key}") if key in e else ()

    return ErrorRule(
        paths("path"),
        c.equals(e, where),
        paths("message_path"),
        paths("type_path"),
        c.string(e["type"], f"{where}.type") if "type" in e else None,
        paths("status_path"),
        frozenset(retryable),
        c.types(e, where, typed),
    )


_NO_FINISH = "needs events.finish_reason (EOF ends normally only after a finish reason)"


def _terminator(c: _Checker, raw: Any, where: str, typed: bool, finish: bool) -> Terminator:
    if raw == "eof_after_finish":
        if not finish:
            c.error(where, _NO_FINISH)
        return Terminator(eof_after_finish=True)
    t = c.keys(raw, where, _TERMINATOR)
    eof = t.get("eof_after_finish", False)
    if not isinstance(eof, bool):
        c.error(f"{where}.eof_after_finish", "must be true or false")
    elif eof and not finish:
        c.error(f"{where}.eof_after_finish", _NO_FINISH)
    # Something must be able to end the stream: `eof_after_finish: false` alone sets nothing.
    if not ({"data", "type", "path"} & t.keys() or eof is True):
        c.error(where, "give data, type, path (+ equals) or eof_after_finish")
    if "type" in t and not typed:
        c.error(f"{where}.type", "needs events.type_path (where the event type is)")
    if "equals" in t and "path" not in t:
        c.error(f"{where}.equals", "needs path")
    equals = c.equals(t, where)
    return Terminator(
        c.string(t["data"], f"{where}.data") if "data" in t else None,
        c.string(t["type"], f"{where}.type") if "type" in t else None,
        c.paths(t["path"], f"{where}.path") if "path" in t else (),
        True if equals is MISSING else equals,
        eof is True,
    )
