"""The adapter interface's shared pieces: the upstream body encoder."""

from __future__ import annotations

import json

import pytest

from gateway.adapters import base
from gateway.errors import InvalidRequest


def test_a_lone_surrogate_is_a_400_that_says_so() -> None:
    # "\ud800" decodes to a str that UTF-8 cannot carry; it is not "nested too deeply".
    with pytest.raises(InvalidRequest, match=r"^body: holds a lone UTF-16 surrogate"):
        base.body_bytes({"messages": [{"role": "user", "content": "a\ud800b"}]})


def test_a_lone_surrogate_is_a_400_with_the_standard_library_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without orjson the standard library parses "\ud800" and its encoder raises
    # UnicodeEncodeError (a ValueError, not the TypeError orjson raises): once a 500.
    if not base.__file__ or not base.__file__.endswith(".py"):
        pytest.skip("compiled module: its globals cannot be patched")
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    monkeypatch.setattr(base, "dumps_kept", lambda obj: encoder.encode(obj).encode())
    with pytest.raises(InvalidRequest, match=r"^body: holds a lone UTF-16 surrogate"):
        base.body_bytes({"content": "a\ud800b"})
    assert base.body_bytes({"content": "é"}) == '{"content":"é"}'.encode()


def test_nesting_beyond_the_encoder_is_still_named_so() -> None:
    deep: object = {}
    for _ in range(300):
        deep = {"a": deep}
    with pytest.raises(InvalidRequest, match=r"^body: is nested too deeply to send upstream$"):
        base.body_bytes(deep)
