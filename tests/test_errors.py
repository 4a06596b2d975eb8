"""gateway.errors: the credential scrub shared by every path that passes upstream text on."""

from __future__ import annotations

from gateway.errors import (
    REDACTED,
    BudgetExceeded,
    ConfigError,
    EarlyError,
    GatewayError,
    InternalError,
    LimitExceeded,
    Unavailable,
    UpstreamConnectError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamTruncated,
    redact,
    scrub_error,
    scrub_error_data,
    status_for_code,
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


def test_status_for_code_follows_the_tree() -> None:
    assert status_for_code("upstream_error") == 502
    assert status_for_code("upstream_timeout") == 504
    assert status_for_code("rate_limited") == 429
    assert status_for_code("shutdown") == 503
    assert status_for_code("invalid_request") == 400


def test_status_for_code_limit_and_budget_are_429() -> None:
    # both were 500 in the encoders' copied tables
    assert status_for_code("limit_exceeded") == LimitExceeded.status == 429
    assert status_for_code("budget_exceeded") == BudgetExceeded.status == 429


def test_status_for_code_unknown_is_500() -> None:
    assert status_for_code("some_provider_code") == 500
    assert status_for_code("config") == 500  # never sent to a client


def _tree(cls: type[GatewayError]) -> list[type[GatewayError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _tree(sub))]


def test_every_code_of_the_tree_has_one_status() -> None:
    seen: dict[str, set[int]] = {}
    for cls in _tree(GatewayError):
        if cls is not ConfigError:
            seen.setdefault(cls.code, set()).add(cls.status)
    assert all(len(statuses) == 1 for statuses in seen.values()), seen
    assert {code: status_for_code(code) for code in seen} == {
        code: next(iter(statuses)) for code, statuses in seen.items()
    }


EVENT_CODES = {
    "upstream_error",
    "upstream_truncated",
    "upstream_timeout",
    "upstream_protocol",
    "limit_exceeded",
    "shutdown",
    "internal",
}
"""Contract section 5 rule 5: the codes of an ``error`` event."""


def test_errors_whose_code_names_a_status_say_upstream_error_in_an_event() -> None:
    # After a heartbeat started the response, a refused or unreachable upstream ends the
    # stream with an event; its code is one of rule 5's, the status code stays for the JSON.
    refused = UpstreamStatusError(429, "upstream answered 429")
    down = UpstreamConnectError("could not connect to upstream")
    none = Unavailable("no upstream deployment is available")
    for exc, status_code in ((refused, "rate_limited"), (down, "upstream_connect")):
        assert exc.to_json()["error"]["code"] == status_code
        assert exc.to_event_data() == {
            "code": "upstream_error",
            "message": exc.message,
            "retryable": True,
        }
    assert none.to_event_data()["code"] == "upstream_error"
    for exc in (
        UpstreamTimeout("t"),
        UpstreamTruncated("t"),
        LimitExceeded("l"),
        InternalError("i"),
    ):
        assert exc.to_event_data()["code"] == exc.error_code
        assert exc.to_event_data()["code"] in EVENT_CODES


def test_an_upstream_429_without_retry_after_gets_one() -> None:
    assert UpstreamStatusError(429, "x").headers == {"Retry-After": "1"}
    assert UpstreamStatusError(429, "x", retry_after=7.2).headers == {"Retry-After": "7"}
    assert UpstreamStatusError(503, "x").headers == {}
