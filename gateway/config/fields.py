"""Reading a decoded config document while collecting every error with its key path. Pure.

A :class:`Reader` walks the document; each section is described by a *spec*, a mapping of key
-> converter. A converter takes ``(reader, value, path)`` and returns the converted value, or
:data:`BAD` after recording an error. Section keys outside the spec are errors with a
"did you mean" suggestion. Nothing here raises on bad input: the caller raises one
:class:`~gateway.errors.ConfigError` with the whole list at the end.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from gateway.config.envsubst import Source, join_path
from gateway.config.units import parse_duration, parse_size

T = TypeVar("T")
BAD: Final = object()
"""Returned by a converter whose value was rejected (the error is already recorded)."""

Conv = Callable[["Reader", Any, str], Any]

MIN_SCRUBBED: Final = 12
"""Environment values this long or longer are scrubbed from every error (see
:meth:`Reader.redacted`)."""
MAX_COUNT: Final = 10**12
"""The largest integer a count key takes (streams, requests, tokens, events): far beyond any
useful setting, and well inside the 64-bit integers of Redis."""

_KEY_CUT = re.compile(r"[:\s]")
_INT = re.compile(r"^\s*[+-]?\d+\s*$")
# RFC 9110 token characters: anything else cannot be a header name.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def kind(value: Any) -> str:
    """A YAML-ish name for the type of ``value``, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def shown_key(key: object) -> str:
    """A mapping key fit for an error message.

    A key with a ``:`` or whitespace in it is most likely ``name:value`` written without the
    space YAML needs after the colon (``{api_key:sk-...}`` reads as one key): what follows the
    first ``:`` or whitespace may be a secret, so it is shown as ``***`` (``api_key:***``).
    """
    text = str(key)
    cut = _KEY_CUT.search(text)
    return text if cut is None else f"{text[: cut.end()]}***"


def key_path(path: str, key: object) -> str:
    """The path of mapping key ``key`` under ``path``, for an error about the key itself: always
    ``path.key`` (an integer key is a key, not a list index), shown by :func:`shown_key`."""
    shown = shown_key(key)
    return f"{path}.{shown}" if path else shown


def unknown_key_message(key: object, known: Collection[str]) -> str:
    """``unknown key (did you mean 'idle'?)``, or the list of known keys when none is close.

    For a key cut by :func:`shown_key` the suggestion is for the part before the cut, with a
    reminder of the space after ``:`` when that is what the cut was.
    """
    text = str(key)
    cut = _KEY_CUT.search(text)
    name = text if cut is None else text[: cut.start()]
    colon = cut is not None and cut.group() == ":"
    close = difflib.get_close_matches(name, list(known), n=1)
    if close and colon:
        return f"unknown key (did you mean '{close[0]}: ...'? YAML needs a space after ':')"
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    hint = "; YAML needs a space after ':'" if colon else ""
    return f"unknown key (known: {', '.join(sorted(known))}{hint})"


class Reader:
    """Collects errors (``path: message``) while a document is read.

    Errors at a path in ``silenced`` are dropped: a value whose ``${VAR}`` failed was already
    reported, and "expected an integer, got a string" on it would only be noise.

    ``sources`` (from ``envsubst.interpolate``) keeps environment values out of messages: an
    error at a path whose value came from ``${NAME}`` quotes it as written (``'${NAME}'``), and
    :meth:`redacted` replaces any variable's value left in any message (one an adapter wrote,
    or a URL quoted in part) by its ``${NAME}``. A variable may hold a key set in the wrong place.
    """

    def __init__(
        self, silenced: Collection[str] = (), sources: Mapping[str, Source] | None = None
    ) -> None:
        self.errors: list[str] = []
        self.silenced = silenced
        self.sources: Mapping[str, Source] = sources or {}

    def error(self, path: str, message: str) -> None:
        if path in self.silenced:
            return
        source = self.sources.get(path)
        if source is not None:
            message = message.replace(repr(source.text), repr(source.written))
        self.errors.append(f"{path}: {message}")

    def redacted(self) -> list[str]:
        """:attr:`errors` with every environment value of :data:`MIN_SCRUBBED` characters or
        more replaced by ``${NAME}`` (shorter ones, such as a port, are no secret and would
        match too much of a message)."""
        values = {
            value: f"${{{name}}}"
            for source in self.sources.values()
            for name, value in source.values
            if len(value) >= MIN_SCRUBBED
        }
        out = []
        for line in self.errors:
            for value in sorted(values, key=len, reverse=True):
                line = line.replace(value, values[value])
            out.append(line)
        return out

    def unknown_key(self, path: str, key: object, known: Collection[str]) -> None:
        """Report ``key`` of the mapping at ``path`` as unknown. Never silenced: a failed
        ``${VAR}`` in its value says nothing about the key's own mistake."""
        self.errors.append(f"{key_path(path, key)}: {unknown_key_message(key, known)}")

    def mapping(self, raw: Any, path: str, known: Collection[str]) -> dict[str, Any] | None:
        """The known keys of ``raw``; ``None`` (absent or empty section) reads as ``{}``.

        Unknown keys are reported and dropped; a non-mapping is reported and gives ``None``.
        """
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.error(path, f"expected a mapping, got {kind(raw)}")
            return None
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(key, str) and key in known:
                out[key] = value
            else:
                self.unknown_key(path, key, known)
        return out

    def free_mapping(self, raw: Any, path: str) -> dict[str, Any] | None:
        """``raw`` as a mapping with any string keys (``None`` reads as ``{}``)."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.error(path, f"expected a mapping, got {kind(raw)}")
            return None
        bad = [k for k in raw if not isinstance(k, str)]
        for key in bad:
            self.error(key_path(path, key), f"keys must be strings, got {kind(key)}")
        return None if bad else raw

    def sequence(self, raw: Any, path: str) -> list[Any] | None:
        """``raw`` as a list (``None`` reads as ``[]``); a non-list is reported, giving ``None``."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error(path, f"expected a list, got {kind(raw)}")
            return None
        return raw

    def fields(
        self, section: Mapping[str, Any], path: str, spec: Mapping[str, Conv]
    ) -> dict[str, Any]:
        """Convert each present key of ``section`` with its converter; rejected ones are dropped."""
        out: dict[str, Any] = {}
        for key, raw in section.items():
            conv = spec.get(key)
            if conv is None:
                continue
            value = conv(self, raw, join_path(path, key))
            if value is not BAD:
                out[key] = value
        return out

    def build(self, cls: type[T], raw: Any, path: str, spec: Mapping[str, Conv]) -> T:
        """A ``cls`` from the section at ``path``; absent or rejected fields keep their defaults."""
        section = self.mapping(raw, path, spec)
        return cls(**self.fields(section or {}, path, spec))


def string(*, nonempty: bool = True, nullable: bool = False) -> Conv:
    def conv(r: Reader, v: Any, path: str) -> Any:
        if v is None and nullable:
            return None
        if not isinstance(v, str):
            r.error(path, f"expected a string, got {kind(v)}")
            return BAD
        if nonempty and not v.strip():
            r.error(path, "must not be empty")
            return BAD
        return v

    return conv


def boolean(r: Reader, v: Any, path: str) -> Any:
    """``true``/``false``; also the strings, so ``${FLAG:-true}`` works."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    r.error(path, f"expected true or false, got {kind(v)}")
    return BAD


def integer(*, lo: int = 1, hi: int | None = None, nullable: bool = False) -> Conv:
    """An int in ``[lo, hi]``; a string of digits is accepted (values from ``${VAR}``).

    Without ``hi`` the ceiling is :data:`MAX_COUNT`: every integer key is a count, and one past
    what Redis and its Lua scripts hold would fail each request rather than the config.
    """
    too_low = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
    too_high = f"between {lo} and {hi}" if hi is not None else f"at most {MAX_COUNT}"
    ceiling = MAX_COUNT if hi is None else hi

    def conv(r: Reader, v: Any, path: str) -> Any:
        if v is None and nullable:
            return None
        if isinstance(v, str) and _INT.match(v):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            r.error(path, f"expected an integer, got {kind(v)}")
            return BAD
        if v < lo or v > ceiling:
            r.error(path, f"must be {too_low if v < lo else too_high} (got {v})")
            return BAD
        return v

    return conv


def duration(*, positive: bool = True, nullable: bool = False) -> Conv:
    """Seconds from a number or ``"15s"``-style string; zero only when not ``positive``."""

    def conv(r: Reader, v: Any, path: str) -> Any:
        if v is None and nullable:
            return None
        try:
            seconds = parse_duration(v)
        except ValueError as exc:
            r.error(path, str(exc))
            return BAD
        if positive and seconds <= 0:
            r.error(path, f"must be greater than zero (got {v!r})")
            return BAD
        return seconds

    return conv


def size(*, nullable: bool = False) -> Conv:
    """Bytes from an int or ``"1MiB"``-style string; always greater than zero."""

    def conv(r: Reader, v: Any, path: str) -> Any:
        if v is None and nullable:
            return None
        try:
            n = parse_size(v)
        except ValueError as exc:
            r.error(path, str(exc))
            return BAD
        if n <= 0:
            r.error(path, f"must be greater than zero (got {v!r})")
            return BAD
        return n

    return conv


def choice(*options: str) -> Conv:
    def conv(r: Reader, v: Any, path: str) -> Any:
        if isinstance(v, str) and v in options:
            return v
        r.error(path, f"must be one of {', '.join(options)} (got {v!r})")
        return BAD

    return conv


def str_tuple(item: Conv | None = None) -> Conv:
    """A list of non-empty strings as a tuple; ``item`` checks each one further."""
    check = item or string()

    def conv(r: Reader, v: Any, path: str) -> Any:
        items = r.sequence(v, path)
        if items is None:
            return BAD
        out = [check(r, x, join_path(path, i)) for i, x in enumerate(items)]
        return BAD if any(x is BAD for x in out) else tuple(out)

    return conv


def url(*schemes: str) -> Conv:
    """An absolute URL with one of ``schemes`` and a host (or a path for ``unix``).

    Errors show the URL through :func:`shown_url`: it may carry a password or a key.
    """

    def conv(r: Reader, v: Any, path: str) -> Any:
        if not isinstance(v, str):
            r.error(path, f"expected a URL string, got {kind(v)}")
            return BAD
        shown = shown_url(v)
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 (validates the port, which urlsplit alone does not)
        except ValueError as exc:
            r.error(path, f"invalid URL {shown!r} ({exc})")
            return BAD
        if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "unix"):
            expected = " or ".join(s + "://..." for s in schemes)
            r.error(path, f"invalid URL {shown!r} (expected {expected})")
            return BAD
        if any(c.isspace() for c in v):
            r.error(path, f"invalid URL {shown!r} (contains whitespace)")
            return BAD
        return v

    return conv


def shown_url(text: str) -> str:
    """``text`` fit for an error message: the password, each query value and the fragment
    replaced by ``***`` (``redis://:***@host:6379/0``, ``https://h/v1?key=***``); the scheme,
    user name, host, port, path and trailing whitespace kept, so the operator still sees which
    URL is wrong and why.

    Works on the text, not through ``urlsplit`` (which rejects some of the URLs reported). The
    user information is whatever precedes the *last* ``@``, so a password with an unescaped
    ``/``, ``?`` or ``#`` is hidden too: hiding too much is the safe mistake.
    """
    body = text.rstrip()
    scheme, slashes, rest = body.partition("//")
    if not slashes:
        scheme, rest = "", scheme
    userinfo, at, rest = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    rest, hash_, fragment = rest.partition("#")
    rest, qmark, query = rest.partition("?")
    if query:
        params = (param.partition("=") for param in query.split("&"))
        query = "&".join(f"{name}=***" if eq else "***" if name else "" for name, eq, _ in params)
    shown = f"{scheme}{slashes}{user}{colon and ':***'}{at}{rest}{qmark}{query}{hash_}"
    return f"{shown}{fragment and '***'}{text[len(body) :]}"


def header_name(r: Reader, v: Any, path: str) -> Any:
    """A header name, lower-cased (HTTP header names are case-insensitive)."""
    if isinstance(v, str) and HEADER_NAME.match(v):
        return v.lower()
    r.error(path, f"invalid header name {v!r}")
    return BAD


def headers(r: Reader, v: Any, path: str) -> Any:
    """Extra HTTP headers: valid names, string values without CR/LF (no header injection)."""
    m = r.free_mapping(v, path)
    if m is None:
        return BAD
    ok = True
    for name, value in m.items():
        where = join_path(path, name)
        if not HEADER_NAME.match(name):
            hint = " (YAML needs a space after ':')" if ":" in name else ""
            r.error(key_path(path, name), f"invalid header name{hint}")
            ok = False
        elif not isinstance(value, str):
            r.error(where, f"expected a string header value, got {kind(value)} (quote it)")
            ok = False
        elif problem := header_value_problem(value):
            r.error(where, f"header value {problem}")
            ok = False
    return dict(m) if ok else BAD


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value (never quoting it: it may be a
    secret), or ``None``: no CR, LF or NUL (header injection), nothing outside Latin-1 (an HTTP
    client cannot encode it, and every request of the route would fail)."""
    if "\r" in value or "\n" in value or "\0" in value:
        return "must not contain CR, LF or NUL"
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return "must not contain characters outside Latin-1"
    return None


def api_key(r: Reader, v: Any, path: str) -> Any:
    """An upstream credential (sent in a header by every adapter that takes one), or ``None``."""
    if v is None:
        return None
    if not isinstance(v, str):
        r.error(path, f"expected a string, got {kind(v)}")
        return BAD
    if problem := header_value_problem(v):
        r.error(path, problem)
        return BAD
    return v
