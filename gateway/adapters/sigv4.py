"""AWS Signature Version 4 for one HTTP request, by hand (hashlib + hmac). Pure.

Follows the SigV4 spec the way botocore's ``SigV4Auth`` applies it to non-S3 services, so the
two agree byte for byte (the tests compare them):

* canonical URI: the URL path with dot segments and empty segments removed, then URI-encoded
  once more (``%3A`` becomes ``%253A``): non-S3 services sign the path *as sent*, encoded again;
* canonical query: ``key=value`` pairs sorted, each part URI-encoded (unreserved kept);
* canonical headers: every header except hop-by-hop/tracing ones (botocore's list), names
  lowercased and sorted, values trimmed with inner runs of spaces collapsed, repeats joined by
  ``,``; ``host`` is added from the URL when missing (default ports dropped);
* payload hash: SHA-256 of the body (always signed, never ``UNSIGNED-PAYLOAD``);
* ``x-amz-date`` and, with temporary credentials, ``x-amz-security-token`` are signed too.

The caller must send the URL exactly as signed. :func:`quote_path_segment` encodes a path
segment so that common HTTP clients (which re-normalise percent-escapes) leave it unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_UNSIGNED = frozenset(
    {
        "authorization",
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 pchar minus unreserved: kept literal so a client's URL normaliser cannot change them.
_PATH_SAFE = ":@!$&'()*,;="


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """Static AWS credentials; ``session_token`` for temporary (STS) credentials."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def quote_path_segment(segment: str) -> str:
    """Percent-encode one path segment (``/`` included) for a URL that will be signed.

    Unreserved characters and RFC 3986 sub-delimiters, ``:`` and ``@`` stay literal: they are
    legal in a path and HTTP clients such as yarl would decode their escapes anyway, which
    would change the path after signing.
    """
    return quote(segment, safe=_PATH_SAFE)


def sign_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    credentials: AwsCredentials,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to send: ``headers`` plus ``host``, ``x-amz-date``, the session token (when
    set) and ``authorization``, signed for ``method url`` with ``body`` at time ``now``.

    ``now`` is converted to UTC (a naive datetime is taken as UTC). Any ``authorization``,
    ``x-amz-date`` or ``x-amz-security-token`` in ``headers`` is replaced. Raises nothing for
    well-formed input; the result is deterministic for fixed arguments.
    """
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    out = {
        name: value
        for name, value in headers.items()
        if name.lower() not in ("authorization", "x-amz-date", "x-amz-security-token")
    }
    if not any(name.lower() == "host" for name in out):
        out["host"] = _host(url)
    out["x-amz-date"] = amz_date
    if credentials.session_token:
        out["x-amz-security-token"] = credentials.session_token
    canonical, signed = canonical_request(method, url, out, body)
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        (ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    key = signing_key(credentials.secret_access_key, amz_date[:8], region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return out


def canonical_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes
) -> tuple[str, str]:
    """The SigV4 canonical request and its ``SignedHeaders`` list, for the headers given."""
    parts = urlsplit(url)
    grouped: dict[str, list[str]] = {}
    for name, value in headers.items():
        lname = name.lower().strip()
        if lname not in _UNSIGNED:
            grouped.setdefault(lname, []).append(" ".join(value.split()))
    if "host" not in grouped:
        grouped["host"] = [_host(url)]
    names = sorted(grouped)
    header_lines = "".join(f"{n}:{','.join(grouped[n])}\n" for n in names)
    signed = ";".join(names)
    return (
        "\n".join(
            (
                method.upper(),
                _canonical_path(parts.path),
                _canonical_query(parts.query),
                header_lines,
                signed,
                hashlib.sha256(body).hexdigest(),
            )
        ),
        signed,
    )


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """``kSigning``: the HMAC chain over date (``YYYYMMDD``), region, service, ``aws4_request``."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return host


def _canonical_path(path: str) -> str:
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    normalised = "/" + "/".join(segments)
    if path.endswith("/") and segments:
        normalised += "/"
    return quote(normalised, safe="/~")


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        key, _, value = item.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))
