"""gateway/stream/trace.py's client context: what of a client's W3C trace context an unsampled
stream sends upstream (only a well-formed ``traceparent``, W3C Trace Context level 1)."""

from __future__ import annotations

import pytest

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
