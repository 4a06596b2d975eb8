"""``${VAR}`` interpolation in config values (contract section 2). Pure.

Syntax, inside any string value at any depth (lists, maps, header values, api keys):

- ``${VAR}``: the value of ``VAR``; an error when ``VAR`` is not set (an empty value is kept).
- ``${VAR:-default}``: ``default`` when ``VAR`` is unset *or empty* (as in the POSIX shell);
  ``default`` is literal text up to the first ``}`` and may be empty.
- ``$$``: a literal ``$`` (so ``$${HOME}`` gives the text ``${HOME}``).
- any other ``$`` is kept as is.

Only values are interpolated, never mapping keys, and substituted text is not scanned again.
Problems name the key path but never quote the value, which may hold a secret. A value from the
environment may be a secret too (an API key in the wrong variable): :func:`interpolate` can also
return, for every string it changed, what it was written as, so that an error about the value
shows ``'${NAME}'`` instead (``fields.Reader`` does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_REF = re.compile(r"\$(?:(?P<esc>\$)|\{(?P<body>[^}]*)\}|(?P<open>\{))")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
INVALID_REFERENCE = (
    "invalid variable reference: write '${NAME}' or '${NAME:-default}' with NAME matching"
    " [A-Za-z_][A-Za-z0-9_]* (and '$$' for a literal '$')"
)


def join_path(path: str, key: object) -> str:
    """``path.key``, or ``key`` at the root; integer keys become ``path[i]``."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


Problems = list[tuple[str, str]]
"""``(key path, message)`` pairs."""


@dataclass(frozen=True, slots=True)
class Source:
    """A string value changed by interpolation: ``text`` as the config reads it now, as
    ``written`` in the file, and the ``(NAME, value)`` of each variable put into it."""

    text: str
    written: str
    values: tuple[tuple[str, str], ...]


def interpolate(
    doc: Any, env: Mapping[str, str], path: str = "", sources: dict[str, Source] | None = None
) -> tuple[Any, Problems]:
    """Replace references in every string value of ``doc``.

    Input: a decoded YAML document (dicts, lists, scalars), the environment, the path of
    ``doc`` (``""`` for the root). Output: a new document with the same shape (inputs are not
    mutated) and the problems as ``(path, message)`` pairs, e.g. ``("routes[1].upstream.api_key",
    "environment variable API_KEY is not set")``. With ``sources``, each changed string's
    :class:`Source` is stored there under its path.
    A value with an error keeps its text unreplaced. Never raises.
    """
    errors: Problems = []
    return _walk(doc, env, path, errors, sources), errors


def _walk(
    node: Any,
    env: Mapping[str, str],
    path: str,
    errors: Problems,
    sources: dict[str, Source] | None,
) -> Any:
    if isinstance(node, str):
        if "$" not in node:
            return node
        values: list[tuple[str, str]] = []
        text = substitute(node, env, path, errors, values)
        if sources is not None and text != node:
            sources[path] = Source(text, node, tuple(values))
        return text
    if isinstance(node, dict):
        return {k: _walk(v, env, join_path(path, k), errors, sources) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, env, join_path(path, i), errors, sources) for i, v in enumerate(node)]
    return node


def substitute(
    text: str,
    env: Mapping[str, str],
    path: str,
    errors: Problems,
    values: list[tuple[str, str]] | None = None,
) -> str:
    """Interpolate one string; append ``(path, message)`` problems to ``errors`` and, when
    given, the ``(NAME, value)`` of each variable used to ``values``."""

    def replace(m: re.Match[str]) -> str:
        if m.group("esc"):
            return "$"
        if m.group("open"):
            errors.append((path, "unterminated '${' (write '$$' for a literal '$')"))
            return m.group(0)
        body = m.group("body")
        ref = _BODY.fullmatch(body)
        if ref is None:
            # Not echoed: what sits between the braces may be a token pasted there by mistake.
            errors.append((path, INVALID_REFERENCE))
            return m.group(0)
        name, default = ref.group("name"), ref.group("default")
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            errors.append((path, f"environment variable {name} is not set"))
            return m.group(0)
        if values is not None:
            values.append((name, value))
        return value

    return _REF.sub(replace, text)
