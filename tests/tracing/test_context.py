"""gateway/stream/trace.py's client context: what of a client's W3C trace context an unsampled
stream sends upstream (only a well-formed ``traceparent``, W3C Trace Context level 1)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.adapters.base import UpstreamRequest
from gateway.stream.trace import NO_TRACE, ContextTrace, client_context

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    "traceparent",
    [
        f"00-{TRACE}-{SPAN}-00",
        f"00-{TRACE}-{SPAN}-01",
        f"fe-{TRACE}-{SPAN}-00",
    ],
)
def test_a_well_formed_traceparent_goes_on(traceparent: str) -> None:
    trace = client_context({"traceparent": traceparent, "tracestate": "vendor=abc"})
    assert isinstance(trace, ContextTrace)


@pytest.mark.parametrize(
    "traceparent",
    [
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # an all-zero trace id is invalid
        f"00-{TRACE}-{'0' * 16}-00",  # an all-zero parent id is invalid
        f"00-{TRACE.upper()}-{SPAN}-00",  # upper-case hex is invalid
        f"00-{TRACE}-{SPAN}-00-extra",  # version 00 has exactly four fields
        f"00-{TRACE}-{SPAN}-0",
        "",
    ],
)
def test_a_malformed_traceparent_is_ignored(traceparent: str) -> None:
    assert client_context({"traceparent": traceparent, "tracestate": "vendor=abc"}) is NO_TRACE


def sent_on(headers: CIMultiDict[str]) -> dict[str, str] | None:
    """The trace headers an unsampled stream sends upstream for the client's ``headers``
    (None: none, the client's context was ignored)."""
    trace = client_context(CIMultiDictProxy(headers))
    if trace is NO_TRACE:
        return None
    attempt = SimpleNamespace(request=UpstreamRequest("POST", "http://u/x", {"a": "b"}, b""))
    request = trace.request_for(attempt)  # type: ignore[arg-type]
    assert isinstance(request, UpstreamRequest)
    return {k: v for k, v in request.headers.items() if k != "a"}


def test_a_traceparent_sent_twice_is_ignored() -> None:
    """W3C Trace Context's test suite (``test_traceparent_duplicated``): two traceparent
    headers are no context at all; the first one must not win."""
    headers = CIMultiDict(
        [("traceparent", f"00-{TRACE}-{SPAN}-00"), ("traceparent", f"00-{'1' * 32}-{SPAN}-00")]
    )
    assert sent_on(headers) is None


def test_several_tracestate_headers_are_one_list() -> None:
    headers = CIMultiDict(
        [
            ("traceparent", f"00-{TRACE}-{SPAN}-00"),
            ("tracestate", "foo=1"),
            ("TraceState", "bar=2, baz=3"),
        ]
    )
    assert sent_on(headers) == {
        "traceparent": f"00-{TRACE}-{SPAN}-00",
        "tracestate": "foo=1,bar=2,baz=3",
    }


@pytest.mark.parametrize(
    "tracestate",
    [
        "foo=1,foo=2",  # a key twice
        "Foo=1",  # upper case key
        "foo=1\x7f",  # a value outside the grammar
        ",".join(f"k{i}=v" for i in range(33)),  # over 32 members
        "k=" + "v" * 600,  # over 512 characters
    ],
)
def test_an_invalid_tracestate_is_dropped_quietly(
    tracestate: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = CIMultiDict([("traceparent", f"00-{TRACE}-{SPAN}-01"), ("tracestate", tracestate)])
    assert sent_on(headers) == {"traceparent": f"00-{TRACE}-{SPAN}-01"}
    assert caplog.records == []


def test_a_later_version_goes_on_as_version_00() -> None:
    """W3C: a version above 00 is parsed for its first four fields; what we send is ours."""
    headers = CIMultiDict([("traceparent", f"cc-{TRACE}-{SPAN}-01-what-the-future-holds")])
    assert sent_on(headers) == {"traceparent": f"00-{TRACE}-{SPAN}-01"}
    headers = CIMultiDict([("traceparent", f"cc-{TRACE}-{SPAN}-01.what")])
    assert sent_on(headers) is None
