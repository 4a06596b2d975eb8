"""``${VAR}`` interpolation of config values (gateway/config/envsubst.py)."""

from __future__ import annotations

import copy
from typing import Any

from gateway.config.envsubst import Source, interpolate, join_path

ENV = {"KEY": "sk-123", "HOST": "example.com", "EMPTY": "", "INDIRECT": "${KEY}"}


def sub(doc: Any, env: dict[str, str] = ENV) -> tuple[Any, list[tuple[str, str]]]:
    return interpolate(doc, env)


def test_set_variable() -> None:
    assert sub({"a": "${KEY}"}) == ({"a": "sk-123"}, [])


def test_several_per_string() -> None:
    doc, problems = sub({"url": "https://${HOST}/v1?k=${KEY}&again=${KEY}"})
    assert doc == {"url": "https://example.com/v1?k=sk-123&again=sk-123"}
    assert problems == []


def test_default_used_when_unset_or_empty() -> None:
    doc, problems = sub({"a": "${NOPE:-fallback}", "b": "${EMPTY:-fallback}", "c": "${NOPE:-}"})
    assert doc == {"a": "fallback", "b": "fallback", "c": ""}
    assert problems == []


def test_value_wins_over_default() -> None:
    assert sub({"a": "${KEY:-other}"})[0] == {"a": "sk-123"}


def test_default_may_hold_spaces_and_colons() -> None:
    assert sub({"a": "${NOPE:-redis://h:1/0 x}"})[0] == {"a": "redis://h:1/0 x"}


def test_empty_value_without_default_is_kept() -> None:
    assert sub({"a": "x${EMPTY}y"}) == ({"a": "xy"}, [])


def test_missing_variable_names_variable_and_path() -> None:
    doc = {"routes": [{}, {"upstream": {"api_key": "${OPENAI_API_KEY}"}}]}
    out, problems = sub(doc)
    assert problems == [
        ("routes[1].upstream.api_key", "environment variable OPENAI_API_KEY is not set")
    ]
    assert out == doc  # the failed value keeps its text


def test_every_missing_variable_is_reported() -> None:
    _, problems = sub({"a": "${ONE}-${TWO}", "b": ["${THREE}"]})
    assert [message.split()[2] for _, message in problems] == ["ONE", "TWO", "THREE"]
    assert [path for path, _ in problems] == ["a", "a", "b[0]"]


def test_nested_lists_and_maps() -> None:
    doc = {"h": {"X-Key": "Bearer ${KEY}"}, "l": [["${HOST}"], {"k": "${KEY}"}]}
    out, problems = sub(doc)
    assert out == {"h": {"X-Key": "Bearer sk-123"}, "l": [["example.com"], {"k": "sk-123"}]}
    assert problems == []


def test_nested_missing_path() -> None:
    _, problems = sub({"r": [{"h": {"X-Key": "${NOPE}"}}]})
    assert problems == [("r[0].h.X-Key", "environment variable NOPE is not set")]


def test_dollar_dollar_escapes() -> None:
    doc, problems = sub({"a": "$${KEY}", "b": "cost: $$5", "c": "$$$${KEY}", "d": "$$${KEY}"})
    assert doc == {"a": "${KEY}", "b": "cost: $5", "c": "$${KEY}", "d": "$sk-123"}
    assert problems == []


def test_lone_dollar_is_literal() -> None:
    assert sub({"a": "price $5 and $KEY"}) == ({"a": "price $5 and $KEY"}, [])


def test_unterminated_reference() -> None:
    _, problems = sub({"a": "x ${KEY"})
    assert problems == [("a", "unterminated '${' (write '$$' for a literal '$')")]


def test_invalid_reference() -> None:
    _, problems = sub({"a": "${1BAD}", "b": "${}", "c": "${A B}"})
    assert [p for p, _ in problems] == ["a", "b", "c"]
    assert problems[0][1] == (
        "invalid variable reference: write '${NAME}' or '${NAME:-default}' with NAME matching"
        " [A-Za-z_][A-Za-z0-9_]* (and '$$' for a literal '$')"
    )


def test_keys_are_never_interpolated() -> None:
    assert sub({"${KEY}": "v"}) == ({"${KEY}": "v"}, [])


def test_substituted_text_is_not_rescanned() -> None:
    assert sub({"a": "${INDIRECT}"})[0] == {"a": "${KEY}"}


def test_non_strings_untouched_and_input_not_mutated() -> None:
    doc = {"n": 1, "f": 1.5, "b": True, "z": None, "l": ["${KEY}", 2]}
    before = copy.deepcopy(doc)
    out, _ = sub(doc)
    assert out == {"n": 1, "f": 1.5, "b": True, "z": None, "l": ["sk-123", 2]}
    assert doc == before


def test_join_path() -> None:
    assert join_path("", "server") == "server"
    assert join_path("routes", 2) == "routes[2]"
    assert join_path("routes[2]", "name") == "routes[2].name"


def test_sources_record_what_each_changed_value_was_written_as() -> None:
    sources: dict[str, Source] = {}
    doc = {"a": "x-${KEY}-${HOST}", "b": ["$$5", "plain"], "c": "${NOPE:-d}", "d": "${NOPE}"}
    out, _ = interpolate(doc, ENV, sources=sources)
    assert out["a"] == "x-sk-123-example.com"
    assert sources == {
        "a": Source(
            "x-sk-123-example.com", "x-${KEY}-${HOST}", (("KEY", "sk-123"), ("HOST", "example.com"))
        ),
        "b[0]": Source("$5", "$$5", ()),
        "c": Source("d", "${NOPE:-d}", ()),
    }  # "d" failed and kept its text: nothing to record
