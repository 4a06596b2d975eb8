"""Bedrock ConverseStream: fixtures at every split, exceptions, truncation, request and signing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.validate import ParamValidator

from gateway.adapters import ADAPTERS
from gateway.adapters.base import UpstreamRequest
from gateway.adapters.bedrock import BedrockAdapter
from gateway.config.model import UpstreamConfig
from gateway.errors import ConfigError, InvalidRequest
from gateway.events import Event
from gateway.request import parse_request
from tests.adapters.harness import (
    assemble,
    check_same_at_every_split,
    fixture_bytes,
    fixture_expected,
    make_adapter,
    replay_checked,
)
from tests.framing.aws_frames import event, exception

KEYS = {
    "region": "us-west-2",
    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
NOW = datetime(2026, 11, 24, 0, 1, 2, tzinfo=UTC)


def adapter(options: dict[str, Any] | None = None, **upstream: Any) -> BedrockAdapter:
    upstream.setdefault("model", "anthropic.claude-3-7-sonnet-20250219-v1:0")
    a = make_adapter(BedrockAdapter, KEYS if options is None else options, **upstream)
    assert isinstance(a, BedrockAdapter)
    a.clock = lambda: NOW
    return a


def run(data: bytes) -> list[Event]:
    return replay_checked(adapter(), [data])


def test_registered() -> None:
    assert ADAPTERS["bedrock"] is BedrockAdapter
    assert BedrockAdapter.framing == "aws-eventstream"


def test_fixture_at_every_split() -> None:
    name = "bedrock_converse_stream.bin"
    data = fixture_bytes(name)
    expected = fixture_expected(name)
    whole = run(data)
    got = assemble(whole)
    assert got.text == expected["text"]
    assert got.reasoning == expected["reasoning"]
    assert got.tool_calls == [
        {"id": c["id"], "name": c["name"], "arguments": c["arguments"]}
        for c in expected["tool_calls"]
    ]
    assert got.usage == {"input_tokens": 51, "output_tokens": 94}
    assert got.terminal == Event("end", {"reason": "tool_calls", "provider_reason": "tool_use"})
    assert got.types[:3] == ["thinking", "reasoning", "reasoning"]
    assert got.types[-2:] == ["usage", "end"]
    # the tool call's ordinal is 0 although its content block is index 2
    assert [e.data["index"] for e in whole if e.type == "tool_call"] == [0, 0, 0]
    check_same_at_every_split(adapter(), data, whole, every_cut=True)


def test_cache_usage_fixture_at_every_split() -> None:
    name = "bedrock_cache_usage.bin"
    data = fixture_bytes(name)
    expected = fixture_expected(name)
    whole = run(data)
    got = assemble(whole)
    assert got.text == expected["text"]
    wanted = {k: v for k, v in expected["usage_normalized"].items() if v is not None}
    del wanted["total_tokens"]
    assert got.usage == wanted
    assert got.terminal == Event("end", {"reason": "stop", "provider_reason": "end_turn"})
    check_same_at_every_split(adapter(), data, whole, every_cut=True)


def test_exception_fixture() -> None:
    name = "bedrock_converse_stream_exception.bin"
    data = fixture_bytes(name)
    expected = fixture_expected(name)
    whole = run(data)
    got = assemble(whole)
    assert got.text == expected["text"]
    assert got.terminal == Event(
        "error",
        {
            "code": "upstream_error",
            "message": expected["error"]["message"],
            "retryable": True,
            "type": "throttlingException",
        },
    )
    check_same_at_every_split(adapter(), data, whole)


def test_truncated_fixture_is_an_error_never_an_end() -> None:
    data = fixture_bytes("bedrock_converse_stream_truncated.bin")
    whole = run(data)
    got = assemble(whole)
    assert got.text == fixture_expected("bedrock_converse_stream_truncated.bin")["text"]
    assert got.terminal is not None and got.terminal.data["code"] == "upstream_truncated"
    check_same_at_every_split(adapter(), data, whole)


def _stream(*frames: bytes) -> bytes:
    return b"".join(frames)


TEXT = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "ok"}})


def test_complete_frames_without_message_stop_are_truncated() -> None:
    events = run(_stream(event("messageStart", {"role": "assistant"}), TEXT))
    assert events[-1].data["code"] == "upstream_truncated"


def test_message_stop_without_metadata_is_truncated() -> None:
    # ConverseStream's terminator is the metadata frame after messageStop (protocols README
    # 0.1): EOF between the two loses the usage, so it is not a clean end (contract rule 5.1).
    events = run(_stream(TEXT, event("messageStop", {"stopReason": "end_turn"})))
    assert [e.type for e in events] == ["thinking", "clear", "delta", "error"]
    assert events[-1].data["code"] == "upstream_truncated"


@pytest.mark.parametrize(
    ("native", "reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_tool_use", "other"),
        ("something_new", "other"),
    ],
)
def test_stop_reasons(native: str, reason: str) -> None:
    events = run(
        _stream(
            TEXT,
            event("messageStop", {"stopReason": native}),
            event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4}}),
        )
    )
    assert events[-1] == Event("end", {"reason": reason, "provider_reason": native})


def test_metadata_cache_counts_and_end_after_usage() -> None:
    usage = {
        "inputTokens": 10,
        "outputTokens": 5,
        "cacheReadInputTokens": 100,
        "cacheWriteInputTokens": 7,
    }
    events = run(
        _stream(
            TEXT,
            event("messageStop", {"stopReason": "end_turn"}),
            event("metadata", {"usage": usage}),
        )
    )
    assert events[-2:] == [
        Event(
            "usage",
            {
                "input_tokens": 117,
                "output_tokens": 5,
                "cached_input_tokens": 100,
                "cache_read_input_tokens": 100,
                "cache_write_input_tokens": 7,
            },
        ),
        Event("end", {"reason": "stop", "provider_reason": "end_turn"}),
    ]


def test_frames_after_metadata_are_ignored() -> None:
    events = run(
        _stream(
            event("messageStop", {"stopReason": "end_turn"}),
            event("metadata", {"usage": {}}),
            exception("internalServerException", {"message": "late"}),
        )
    )
    assert events[-1].type == "end"


@pytest.mark.parametrize(
    ("kind", "retryable"),
    [
        ("throttlingException", True),
        ("serviceUnavailableException", True),
        ("internalServerException", True),
        ("modelStreamErrorException", True),
        ("validationException", False),
        ("ValidationException", False),
    ],
)
def test_exception_frames(kind: str, retryable: bool) -> None:
    events = run(_stream(TEXT, exception(kind, {"message": "went wrong"})))
    assert events[-1] == Event(
        "error",
        {
            "code": "upstream_error",
            "message": "went wrong",
            "retryable": retryable,
            "type": kind[0].lower() + kind[1:],
        },
    )


def test_model_stream_error_uses_original_message() -> None:
    payload = {"originalStatusCode": 500, "originalMessage": "model crashed"}
    events = run(_stream(exception("modelStreamErrorException", payload)))
    assert events[-1].data["message"] == "model crashed"
    assert events[-1].data["retryable"] is True


def test_corrupt_frame_is_a_protocol_error() -> None:
    data = bytearray(_stream(TEXT, TEXT))
    data[-8] ^= 0xFF
    events = run(bytes(data))
    assert [e.type for e in events] == ["thinking", "clear", "delta", "error"]
    assert events[-1].data["code"] == "upstream_protocol"


def test_reasoning_signature_and_unknown_deltas_emit_nothing() -> None:
    events = run(
        _stream(
            event(
                "contentBlockDelta",
                {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s"}}},
            ),
            event(
                "contentBlockDelta",
                {
                    "contentBlockIndex": 0,
                    "delta": {"reasoningContent": {"redactedContent": "AA=="}},
                },
            ),
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"citation": {}}}),
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": ""}}),
            event("somethingNew", {"x": 1}),
            event("messageStop", {"stopReason": "end_turn"}),
            event("metadata", {}),
        )
    )
    assert [e.type for e in events] == ["thinking", "end"]


def test_two_tool_calls_get_ordinals_in_order() -> None:
    def start(index: int, tid: str) -> bytes:
        return event(
            "contentBlockStart",
            {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": tid, "name": "f"}}},
        )

    def piece(index: int, text: str) -> bytes:
        return event(
            "contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": text}}}
        )

    events = run(
        _stream(
            start(3, "a"),
            piece(3, '{"x":'),
            start(5, "b"),
            piece(5, "{}"),
            piece(3, "1}"),
            piece(9, "orphan"),
            event("messageStop", {"stopReason": "tool_use"}),
        )
    )
    got = assemble(events)
    assert got.tool_calls == [
        {"id": "a", "name": "f", "arguments": '{"x":1}'},
        {"id": "b", "name": "f", "arguments": "{}"},
    ]


def test_tool_call_without_arguments_is_an_empty_object() -> None:
    # A tool without parameters: contentBlockStart then contentBlockStop, no toolUse deltas.
    # Its arguments joined "" (not JSON, contract section 5); now one "{}" piece at the stop.
    def start(index: int, tid: str) -> bytes:
        return event(
            "contentBlockStart",
            {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": tid, "name": "f"}}},
        )

    def stop(index: int) -> bytes:
        return event("contentBlockStop", {"contentBlockIndex": index})

    with_input = event(
        "contentBlockDelta", {"contentBlockIndex": 3, "delta": {"toolUse": {"input": '{"x":1}'}}}
    )
    data = _stream(
        TEXT,
        stop(0),
        start(1, "a"),
        stop(1),
        start(3, "b"),
        with_input,
        stop(3),
        start(4, "c"),
        stop(4),
        event("messageStop", {"stopReason": "tool_use"}),
        event("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2}}),
    )
    events = run(data)
    assert [e.data for e in events if e.type == "tool_call"] == [
        {"index": 0, "id": "a", "name": "f", "arguments": ""},
        {"index": 0, "arguments": "{}"},
        {"index": 1, "id": "b", "name": "f", "arguments": ""},
        {"index": 1, "arguments": '{"x":1}'},
        {"index": 2, "id": "c", "name": "f", "arguments": ""},
        {"index": 2, "arguments": "{}"},
    ]
    check_same_at_every_split(adapter(), data, events, every_cut=True)


def test_invalid_json_payload_is_a_protocol_error() -> None:
    from tests.framing.aws_frames import frame

    bad = frame({":event-type": "contentBlockDelta", ":message-type": "event"}, b"{nope")
    assert run(bad)[-1].data["code"] == "upstream_protocol"


# --- request -------------------------------------------------------------------------------


def body_of(req: UpstreamRequest) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(req.body)
    return result


def common(**extra: Any) -> Any:
    return parse_request(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Use tools."},
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": "t1", "name": "weather", "arguments": '{"city":"Paris"}'}
                    ],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
                {"role": "user", "content": "And tomorrow?"},
            ],
            **extra,
        }
    )


def test_request_body_shape() -> None:
    req = adapter().build_request(
        common(
            max_tokens=100,
            temperature=1.5,
            top_p=0.9,
            stop=["END"],
            tools=[
                {
                    "type": "function",
                    "name": "weather",
                    "description": "Get it",
                    "parameters": {"type": "object"},
                }
            ],
        )
    )
    assert req.method == "POST"
    assert req.url == (
        "https://bedrock-runtime.us-west-2.amazonaws.com/model/"
        "anthropic.claude-3-7-sonnet-20250219-v1:0/converse-stream"
    )
    assert body_of(req) == {
        "messages": [
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "content": [
                    {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}},
                    {"text": "And tomorrow?"},
                ],
            },
        ],
        "system": [{"text": "Be brief.\n\nUse tools."}],
        "inferenceConfig": {
            "maxTokens": 100,
            "temperature": 1.0,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "weather",
                        "description": "Get it",
                        "inputSchema": {"json": {"type": "object"}},
                    }
                }
            ]
        },
    }


def test_minimal_body_and_additional_fields() -> None:
    options = {
        **KEYS,
        "additional_model_request_fields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
    }
    req = adapter(options).build_request(
        parse_request({"messages": [{"role": "user", "content": "hi"}]})
    )
    assert body_of(req) == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
    }


def test_bad_tool_arguments_are_invalid_request() -> None:
    request = parse_request(
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "t", "name": "f", "arguments": "[1]"}]},
            ]
        }
    )
    with pytest.raises(InvalidRequest, match=r"messages\[1\]\.tool_calls\[0\]\.arguments"):
        adapter().build_request(request)


def test_missing_model_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="model"):
        adapter(model=None).build_request(common())


def botocore_authorization(
    req: UpstreamRequest, monkeypatch: pytest.MonkeyPatch, token: str | None = None
) -> str:
    monkeypatch.setattr(
        botocore_auth, "get_current_datetime", lambda *a, **k: NOW.replace(tzinfo=None)
    )
    headers = {
        k: v
        for k, v in req.headers.items()
        if k not in ("authorization", "x-amz-date", "x-amz-security-token")
    }
    aws = AWSRequest(method=req.method, url=req.url, data=req.body, headers=headers)
    creds = Credentials(KEYS["access_key_id"], KEYS["secret_access_key"], token)
    botocore_auth.SigV4Auth(creds, "bedrock", "us-west-2").add_auth(aws)
    return str(aws.headers["Authorization"])


def test_request_is_signed_like_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    a = adapter(headers={"x-extra": "1"})
    req = a.build_request(common())
    assert req.headers["x-amz-date"] == "20261124T000102Z"
    assert req.headers["host"] == "bedrock-runtime.us-west-2.amazonaws.com"
    assert req.headers["accept"] == "application/vnd.amazon.eventstream"
    assert req.headers["x-extra"] == "1"
    assert (
        "SignedHeaders=accept;content-type;host;x-amz-date;x-extra," in req.headers["authorization"]
    )
    assert req.headers["authorization"] == botocore_authorization(req, monkeypatch)
    # the signature covers the time: a later clock gives another signature
    a.clock = lambda: datetime(2026, 11, 24, 0, 1, 3, tzinfo=UTC)
    assert a.build_request(common()).headers["authorization"] != req.headers["authorization"]


def test_session_token_is_sent_and_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    req = adapter({**KEYS, "session_token": "TOKEN/+="}).build_request(common())
    assert req.headers["x-amz-security-token"] == "TOKEN/+="
    assert req.headers["authorization"] == botocore_authorization(req, monkeypatch, "TOKEN/+=")


def test_arn_model_id_is_encoded_in_the_path() -> None:
    arn = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-v1:0"
    req = adapter(model=arn).build_request(common())
    assert req.url.endswith(
        "/model/arn:aws:bedrock:us-west-2:123456789012:inference-profile%2Fus.anthropic.claude-v1:0/converse-stream"
    )


def test_bearer_api_key_when_no_access_keys() -> None:
    req = adapter({"region": "eu-west-1"}, api_key="ABSK-key").build_request(common())
    assert req.headers["authorization"] == "Bearer ABSK-key"
    assert "x-amz-date" not in req.headers
    assert req.url.startswith("https://bedrock-runtime.eu-west-1.amazonaws.com/model/")


def test_access_keys_win_over_api_key() -> None:
    req = adapter(api_key="ABSK-key").build_request(common())
    assert req.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_no_credentials_is_a_config_error() -> None:
    parsed, errors = BedrockAdapter.parse_options({"region": "us-east-1"}, "routes[0].options")
    assert errors == []
    with pytest.raises(ConfigError, match="access_key_id"):
        BedrockAdapter(UpstreamConfig(model="m"), parsed)


def test_base_url_override() -> None:
    req = adapter(base_url="http://127.0.0.1:9000/").build_request(common())
    assert req.url.startswith("http://127.0.0.1:9000/model/")
    assert req.headers["host"] == "127.0.0.1:9000"


def test_native_request_passes_the_body_through() -> None:
    a = adapter(model=None)
    req = a.build_native_request({"modelId": "m:1", "messages": [], "custom": {"k": 1}})
    assert req.url.endswith("/model/m:1/converse-stream")
    assert body_of(req) == {"messages": [], "custom": {"k": 1}}
    pinned = adapter().build_native_request({"modelId": "other", "messages": []})
    assert "/model/anthropic.claude-3-7-sonnet-20250219-v1:0/" in pinned.url


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "options.region: is required"),
        ({"region": "mars"}, "options.region: 'mars' is not an AWS region"),
        ({"region": 5}, "options.region: must be a non-empty string"),
        ({**KEYS, "regoin": "x"}, "options.regoin: unknown option for provider 'bedrock'"),
        (
            {**KEYS, "secret_key:abc123": "x"},
            "options.secret_key:***: unknown option for provider 'bedrock'",
        ),
        (
            {"region": "us-east-1", "access_key_id": "A"},
            "options: access_key_id and secret_access_key go together",
        ),
        (
            {"region": "us-east-1", "session_token": "T"},
            "options.session_token: needs access_key_id",
        ),
        ({**KEYS, "additional_model_request_fields": "x"}, "must be a mapping"),
    ],
)
def test_option_errors(options: dict[str, Any], message: str) -> None:
    _, errors = BedrockAdapter.parse_options(options, "options")
    assert any(message in e for e in errors), errors


def test_empty_session_token_means_none() -> None:
    parsed, errors = BedrockAdapter.parse_options({**KEYS, "session_token": ""}, "options")
    assert errors == [] and parsed == KEYS
    req = adapter(parsed).build_request(common())
    assert "x-amz-security-token" not in req.headers


def test_valid_options_normalise() -> None:
    parsed, errors = BedrockAdapter.parse_options({**KEYS, "session_token": "T"}, "options")
    assert errors == []
    assert parsed == {**KEYS, "session_token": "T"}


def test_server_tool_use_is_not_a_client_tool_call() -> None:
    # A system tool (Nova web grounding, ...) runs inside Bedrock: its toolUse block has
    # type server_tool_use and its result streams back as a toolResult block. Neither is a call
    # for the client to run, so no tool_call and the end reason stays the model's own.
    server_start = event(
        "contentBlockStart",
        {
            "contentBlockIndex": 0,
            "start": {
                "toolUse": {"toolUseId": "s1", "name": "nova_grounding", "type": "server_tool_use"}
            },
        },
    )
    server_input = event(
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"query":"x"}'}}},
    )
    result_start = event(
        "contentBlockStart",
        {"contentBlockIndex": 1, "start": {"toolResult": {"toolUseId": "s1", "type": "r"}}},
    )
    text = event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"text": "found"}})
    data = _stream(
        server_start,
        server_input,
        event("contentBlockStop", {"contentBlockIndex": 0}),
        result_start,
        event("contentBlockStop", {"contentBlockIndex": 1}),
        text,
        event("contentBlockStop", {"contentBlockIndex": 2}),
        event("messageStop", {"stopReason": "end_turn"}),
        event("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2}}),
    )
    events = run(data)
    assert "tool_call" not in [e.type for e in events]
    assert assemble(events).text == "found"
    assert events[-1].data == {"reason": "stop", "provider_reason": "end_turn"}
    check_same_at_every_split(adapter(), data, events)


CONVERSE_STREAM = (
    botocore.session.get_session()
    .get_service_model("bedrock-runtime")
    .operation_model("ConverseStream")
    .input_shape
)


def _converse(request: dict[str, Any]) -> dict[str, Any]:
    """The Converse body built for ``request``, checked against botocore's model of the API."""
    body: dict[str, Any] = json.loads(adapter().build_request(parse_request(request)).body)
    report = ParamValidator().validate({"modelId": "m", **body}, CONVERSE_STREAM)
    assert not report.has_errors(), report.generate_report()
    return body


def test_awkward_conversations_become_requests_converse_accepts() -> None:
    # Converse refuses blank text blocks ("The text field in the ContentBlock object ... is
    # blank"), ids outside [a-zA-Z0-9_.:-]{1,64}, and a final assistant text with trailing
    # whitespace (Claude); the gateway sends what it accepts.
    odd = "call/" + "é" * 70
    body = _converse(
        {
            "messages": [
                {"role": "system", "content": "\n"},
                {"role": "user", "content": "Weather? 👋"},
                {"role": "assistant", "content": " "},
                {"role": "user", "content": "Please."},
                {
                    "role": "assistant",
                    "content": " ",
                    "tool_calls": [{"id": odd, "name": "weather", "arguments": "{}"}],
                },
                {"role": "tool", "tool_call_id": odd, "content": "  "},
                {"role": "assistant", "content": "It is "},
            ]
        }
    )
    assert "system" not in body
    messages = body["messages"]
    call_id = messages[1]["content"][0]["toolUse"]["toolUseId"]
    assert re.fullmatch(r"[a-zA-Z0-9_.:-]{1,64}", call_id)
    assert messages == [
        {"role": "user", "content": [{"text": "Weather? 👋"}, {"text": "Please."}]},
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": call_id, "name": "weather", "input": {}}}],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": call_id, "content": [{"text": "(no output)"}]}}
            ],
        },
        {"role": "assistant", "content": [{"text": "It is"}]},
    ]


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": " \n"}]}, "messages[0].content"),
        (
            {
                "messages": [
                    {"role": "system", "content": "Pirate."},
                    {"role": "assistant", "content": "Arr, how may I help?"},
                    {"role": "user", "content": "Hi"},
                ]
            },
            "messages[1].role",
        ),
        ({"messages": [{"role": "system", "content": "Only me."}]}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": ["END", ""]}, "stop[1]"),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "name": "t" * 65}],
            },
            "tools[0].name",
        ),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "name": "mcp.search"}],
            },
            "tools[0].name",
        ),
    ],
)
def test_what_converse_refuses_is_a_400_naming_the_field(
    request_body: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest, match="^" + re.escape(field) + ": "):
        adapter().build_request(parse_request(request_body))
