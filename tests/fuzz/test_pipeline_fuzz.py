"""Fuzz properties (issue 5 item 9): for every framing decoder and every adapter in
``ADAPTERS``, random bytes with random network splits never raise, never hang, and the
:class:`~gateway.pipeline.Pipeline` always ends in exactly one terminal event, last.

CI runs a modest number of examples; ``fuzz/fuzz_pipeline.py`` runs the same property for as
long as you like (docs/operations/reliability.md).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import events as ev
from gateway.adapters import ADAPTERS
from gateway.errors import GatewayError
from gateway.framing import DECODERS, new_decoder
from gateway.pipeline import Pipeline
from tests.fuzz.inputs import adapter, split, stream_bytes

CI = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CUTS = st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12)
SMALL_LIMIT = 4096  # small framing bound, so the size limit is exercised too


def run_pipeline(name: str, chunks: list[bytes]) -> list[ev.Event]:
    pipe = Pipeline(adapter(name), SMALL_LIMIT)
    out = pipe.accepted()
    t0 = time.monotonic()
    for chunk in chunks:
        out.extend(pipe.feed(chunk))
    out.extend(pipe.close())
    assert time.monotonic() - t0 < 2.0, "the pipeline is too slow (a hang?)"
    return out


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@CI
@given(data=stream_bytes, cuts=CUTS)
def test_adapter_pipeline_always_ends_in_exactly_one_terminal(
    name: str, data: bytes, cuts: list[int]
) -> None:
    events = run_pipeline(name, split(data, cuts))
    terminals = [e for e in events if e.type in ev.TERMINAL_TYPES]
    assert len(terminals) == 1, events[-3:]
    assert events[-1] is terminals[0]
    assert all(e.type in ev.EVENT_TYPES for e in events)
    if terminals[0].type == ev.ERROR:
        data_ = terminals[0].data
        assert isinstance(data_["code"], str) and isinstance(data_["retryable"], bool)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stream_bytes, cuts=CUTS)
def test_adapter_pipeline_does_not_depend_on_the_split(
    name: str, data: bytes, cuts: list[int]
) -> None:
    """The same bytes give the same visible text whole or split (contract 5 rule 2) as long as
    neither run hit an error: an error may legitimately land at a different point."""
    whole = run_pipeline(name, [data])
    pieces = run_pipeline(name, split(data, cuts))
    if whole[-1].type == ev.END and pieces[-1].type == ev.END:
        text = "".join(str(e.data.get("text", "")) for e in whole if e.type == ev.DELTA)
        assert text == "".join(str(e.data.get("text", "")) for e in pieces if e.type == ev.DELTA)


@pytest.mark.parametrize("framing", sorted(DECODERS))
@CI
@given(data=stream_bytes, cuts=CUTS)
def test_decoders_raise_only_gateway_errors(framing: str, data: bytes, cuts: list[int]) -> None:
    decoder = new_decoder(framing, SMALL_LIMIT)
    try:
        for chunk in split(data, cuts):
            for message in decoder.feed(chunk):
                assert len(message.data.encode("utf-8", "surrogatepass")) <= SMALL_LIMIT * 4
        decoder.close()
    except GatewayError:
        pass  # a clean upstream_protocol error is the contract for bad input


@pytest.mark.parametrize("framing", ["sse", "sse+raw", "ndjson"])
@CI
@given(data=stream_bytes, cuts=CUTS)
def test_text_decoders_are_split_invariant(framing: str, data: bytes, cuts: list[int]) -> None:
    def messages(chunks: list[bytes]) -> list[object] | str:
        decoder = new_decoder(framing, SMALL_LIMIT)
        out: list[object] = []
        try:
            for chunk in chunks:
                out.extend(decoder.feed(chunk))
            out.extend(decoder.close())
        except GatewayError:
            return "error"
        return out

    whole, pieces = messages([data]), messages(split(data, cuts))
    if whole != "error" and pieces != "error":
        assert whole == pieces
