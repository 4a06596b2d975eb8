"""gateway.errors: the credential scrub shared by every path that passes upstream text on."""

from __future__ import annotations

from gateway.errors import (
    REDACTED,
    EarlyError,
    UpstreamError,
    UpstreamStatusError,
    redact,
    scrub_error,
    scrub_error_data,
)

KEY = "sk-test-0123456789"


def test_redact_replaces_every_occurrence() -> None:
    text = f"bad key {KEY}; again {KEY}."
    assert redact(text, KEY) == f"bad key {REDACTED}; again {REDACTED}."


def test_redact_returns_the_same_text_when_clean() -> None:
    text = "nothing secret here"
    assert redact(text, KEY) is text


def test_redact_ignores_missing_and_short_keys() -> None:
    assert redact("abc abc", None) == "abc abc"
    assert redact("abc abc", "") == "abc abc"
    assert redact("abc abc", "abc") == "abc abc"  # under four characters: would garble text
    assert redact("abcd", "abcd") == REDACTED


def test_scrub_error_data_copies_only_when_needed() -> None:
    clean = {"code": "upstream_error", "message": "overloaded", "retryable": True}
    assert scrub_error_data(clean, KEY) is clean
    no_message = {"code": "upstream_error"}
    assert scrub_error_data(no_message, KEY) is no_message
    dirty = {"code": "upstream_error", "message": f"key {KEY}", "retryable": False}
    scrubbed = scrub_error_data(dirty, KEY)
    assert scrubbed == {"code": "upstream_error", "message": f"key {REDACTED}", "retryable": False}
    assert dirty["message"] == f"key {KEY}"  # the caller's dict is left alone


def test_scrub_error_message_and_args() -> None:
    exc = UpstreamStatusError(401, f"Incorrect API key provided: {KEY}")
    assert scrub_error(exc, KEY) is exc
    assert KEY not in exc.message and KEY not in str(exc)
    assert KEY not in exc.to_json()["error"]["message"]
    assert KEY not in exc.to_event_data()["message"]


def test_scrub_error_leaves_a_clean_error_alone() -> None:
    exc = UpstreamError("overloaded", provider_type="overloaded_error")
    scrub_error(exc, KEY)
    assert exc.message == "overloaded" and exc.args == ("overloaded",)


def test_scrub_error_redacts_an_early_errors_event_data() -> None:
    # EarlyError.to_event_data sends the upstream's own data: its message must be scrubbed too
    exc = EarlyError({"code": "upstream_error", "message": f"bad key {KEY}", "retryable": False})
    scrub_error(exc, KEY)
    assert exc.to_event_data() == {
        "code": "upstream_error",
        "message": f"bad key {REDACTED}",
        "retryable": False,
    }
    assert KEY not in exc.to_json()["error"]["message"]
