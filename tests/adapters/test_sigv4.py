"""SigV4 signing: AWS's published test-suite vectors and byte equality with botocore's signer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import yarl  # aiohttp's URL type: the edge sends URLs through it
from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.adapters.sigv4 import (
    AwsCredentials,
    canonical_request,
    quote_path_segment,
    sign_headers,
)

# The aws-sig-v4-test-suite constants (shared by every vector below).
SUITE_CREDS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TIME = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
SUITE_PREFIX = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature="
)


@pytest.mark.parametrize(
    ("method", "url", "signature"),
    [
        # get-vanilla
        (
            "GET",
            "https://example.amazonaws.com/",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        # get-vanilla-query-order-key-case
        (
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        # post-vanilla
        (
            "POST",
            "https://example.amazonaws.com/",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        # get-utf8: the raw path /\u1234 signs as /%E1%88%B4
        (
            "GET",
            "https://example.amazonaws.com/\u1234",
            "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        ),
    ],
)
def test_aws_test_suite_vectors(method: str, url: str, signature: str) -> None:
    headers = sign_headers(
        method,
        url,
        {},
        b"",
        credentials=SUITE_CREDS,
        region="us-east-1",
        service="service",
        now=SUITE_TIME,
    )
    assert headers["host"] == "example.amazonaws.com"
    assert headers["x-amz-date"] == "20150830T123600Z"
    assert headers["authorization"] == SUITE_PREFIX + signature


def botocore_sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    creds: AwsCredentials,
    region: str,
    service: str,
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """botocore's SigV4Auth on the same request at the same (frozen) time."""
    naive = now.astimezone(UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda *a, **k: naive)
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    signer = botocore_auth.SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token),
        service,
        region,
    )
    signer.add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


MODEL_IDS = [
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-v1:0",
    "odd id+with spaces!$&'()*,;=@~é",
]


@pytest.mark.parametrize("model_id", MODEL_IDS)
@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzEXAMPLE//token+="])
def test_matches_botocore_for_a_bedrock_request(
    model_id: str, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = AwsCredentials(
        "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", token
    )
    url = (
        "https://bedrock-runtime.eu-central-1.amazonaws.com/model/"
        f"{quote_path_segment(model_id)}/converse-stream"
    )
    headers = {
        "content-type": "application/json",
        "accept": "application/vnd.amazon.eventstream",
        "X-Custom": "  two   spaces  ",
        "User-Agent": "gateway/1 (not signed)",
    }
    body = b'{"messages":[{"role":"user","content":[{"text":"hi \xc3\xa9"}]}]}'
    now = datetime(2026, 11, 23, 23, 59, 58, tzinfo=UTC)
    ours = sign_headers(
        "POST",
        url,
        headers,
        body,
        credentials=creds,
        region="eu-central-1",
        service="bedrock",
        now=now,
    )
    theirs = botocore_sign(
        "POST", url, headers, body, creds, "eu-central-1", "bedrock", now, monkeypatch
    )
    assert ours["authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"] == "20261123T235958Z"
    assert ours.get("x-amz-security-token") == theirs.get("x-amz-security-token") == token
    assert "user-agent" not in ours["authorization"]
    assert "x-custom" in ours["authorization"]


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/model/m/converse-stream",
        "https://example.com:443/a/./b/../c//d/",
        "https://example.com/?b=2&a=1&a=0&sp=x%20y",
        "https://EXAMPLE.com",
    ],
)
def test_matches_botocore_on_url_edge_cases(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2024, 2, 29, 1, 2, 3, tzinfo=UTC)
    ours = sign_headers(
        "GET", url, {}, b"", credentials=SUITE_CREDS, region="r", service="s", now=now
    )
    theirs = botocore_sign("GET", url, {}, b"", SUITE_CREDS, "r", "s", now, monkeypatch)
    assert ours["authorization"] == theirs["authorization"]


def test_time_zones_and_naive_times_mean_the_same_instant() -> None:
    def auth(now: datetime) -> str:
        return sign_headers(
            "GET",
            "https://example.amazonaws.com/",
            {},
            b"",
            credentials=SUITE_CREDS,
            region="us-east-1",
            service="service",
            now=now,
        )["authorization"]

    plus_two = timezone(timedelta(hours=2))
    assert auth(SUITE_TIME) == auth(SUITE_TIME.replace(tzinfo=None))
    assert auth(SUITE_TIME) == auth(SUITE_TIME.astimezone(plus_two))
    assert auth(SUITE_TIME) != auth(SUITE_TIME + timedelta(seconds=1))


def test_stale_auth_headers_are_replaced_and_input_is_not_mutated() -> None:
    given = {"Authorization": "Bearer old", "X-Amz-Date": "19990101T000000Z", "a": "1"}
    out = sign_headers(
        "GET",
        "https://example.amazonaws.com/",
        given,
        b"",
        credentials=SUITE_CREDS,
        region="us-east-1",
        service="service",
        now=SUITE_TIME,
    )
    assert given["Authorization"] == "Bearer old"
    assert "Authorization" not in out and "X-Amz-Date" not in out
    assert out["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert "SignedHeaders=a;host;x-amz-date," in out["authorization"]


def test_body_and_method_are_signed() -> None:
    def auth(method: str, body: bytes) -> str:
        return sign_headers(
            method,
            "https://h.example/",
            {},
            body,
            credentials=SUITE_CREDS,
            region="r",
            service="s",
            now=SUITE_TIME,
        )["authorization"]

    assert auth("POST", b"{}") != auth("POST", b"{ }")
    assert auth("POST", b"") != auth("PUT", b"")


def test_canonical_request_shape() -> None:
    canonical, signed = canonical_request(
        "post", "https://h.example/model/a%3A0/x", {"Host": "h.example", "B": " x  y "}, b""
    )
    assert signed == "b;host"
    assert canonical.split("\n") == [
        "POST",
        "/model/a%253A0/x",  # non-S3 services sign the sent path encoded once more
        "",
        "b:x y",
        "host:h.example",
        "",
        "b;host",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ]


def test_quote_path_segment_survives_url_normalisation() -> None:
    for model_id in MODEL_IDS:
        path = f"/model/{quote_path_segment(model_id)}/converse-stream"
        assert yarl.URL("https://h.example" + path).raw_path == path
    assert quote_path_segment("a/b:c") == "a%2Fb:c"


def test_credentials_repr_hides_secrets() -> None:
    text = repr(AwsCredentials("AKID", "SECRET", "TOKEN"))
    assert "AKID" in text and "SECRET" not in text and "TOKEN" not in text
