"""The tapped pipeline and the pass-through encoder, without a server (gateway.passthrough,
gateway.encoders.passthrough)."""

from __future__ import annotations

import json

from gateway import events as ev
from gateway.adapters import ADAPTERS
from gateway.encoders.messages import MessagesStreamEncoder
from gateway.encoders.passthrough import PassThroughEncoder, sse_frame
from gateway.framing import Message, new_decoder
from gateway.passthrough import FrameTap, TappedPipeline, new_pipeline
from gateway.pipeline import Pipeline
from tests.adapters.harness import fixture_bytes, make_adapter, replay
from tests.support.gateway import config_from

KEY = "sk-secret-key-123"
ROUTE = config_from({"routes": [{"name": "r", "provider": "simulated"}]}).routes[0]


def test_the_tapped_pipeline_translates_as_the_plain_one() -> None:
    data = fixture_bytes("anthropic_thinking_tool_use.sse")
    adapter = make_adapter(ADAPTERS["anthropic"], model="m")
    tap = FrameTap("messages")
    tapped = TappedPipeline(adapter, tap)
    events = [e for i in range(0, len(data), 50) for e in tapped.feed(data[i : i + 50])]
    events += tapped.close()
    assert events == replay(adapter, [data])[1:]  # replay starts with thinking (accepted)
    assert [(m.event, m.data) for m in tap.take()] == [(m.event, m.data) for m in _frames(data)]


def _frames(data: bytes) -> list[Message]:
    decoder = new_decoder("sse")
    return decoder.feed(data) + decoder.close()


def test_the_upstreams_own_error_frame_is_kept_without_the_key() -> None:
    adapter = make_adapter(ADAPTERS["anthropic"], model="m", api_key=KEY)
    tap = FrameTap("messages")
    pipe = TappedPipeline(adapter, tap)
    error = {"type": "error", "error": {"type": "overloaded_error", "message": f"bad {KEY}"}}
    events = pipe.feed(b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n")
    assert events[-1].type == ev.ERROR and tap.own_terminal
    (frame,) = tap.take()
    assert frame.event == "error" and KEY not in frame.data and "[redacted]" in frame.data


def test_a_malformed_frame_is_not_passed_and_the_gateway_writes_the_error() -> None:
    adapter = make_adapter(ADAPTERS["anthropic"], model="m")
    tap = FrameTap("messages")
    pipe = TappedPipeline(adapter, tap)
    events = pipe.feed(b"event: message_start\ndata: {not json\n\n")
    assert events[-1].data["code"] == "upstream_protocol"
    assert tap.take() == [] and not tap.own_terminal


def test_a_truncated_stream_keeps_its_frames_then_fails() -> None:
    data = fixture_bytes("anthropic_truncated.sse")
    adapter = make_adapter(ADAPTERS["anthropic"], model="m")
    tap = FrameTap("messages")
    pipe = TappedPipeline(adapter, tap)
    events = pipe.feed(data) + pipe.close()
    assert events[-1].data["code"] == "upstream_truncated" and not tap.own_terminal
    assert len(tap.frames) == len(_frames(data))


def test_an_attempt_of_another_api_is_not_live() -> None:
    tap = FrameTap("messages")
    tap.frames.append(Message("x", "held from an earlier attempt"))
    pipe = new_pipeline(make_adapter(ADAPTERS["openai-chat"], model="m"), tap, 1 << 20)
    assert type(pipe) is Pipeline and tap.used and not tap.live and tap.frames == []
    assert type(new_pipeline(make_adapter(ADAPTERS["anthropic"]), None, 1 << 20)) is Pipeline


def test_sse_frame_keeps_the_data_and_the_name() -> None:
    assert (
        sse_frame(Message("ping", '{"type": "ping"}')) == b'event: ping\ndata: {"type": "ping"}\n\n'
    )
    assert sse_frame(Message("message", "a\nb")) == b"data: a\ndata: b\n\n"


def test_the_encoder_waits_for_the_upstream_before_deciding() -> None:
    delegate = MessagesStreamEncoder(ROUTE, "rid", model="r")
    tap = FrameTap("messages")
    encoder = PassThroughEncoder(delegate, tap)
    created = ev.created("rid", "r", "p", "m")
    assert encoder.encode(created) == b""  # a heartbeat started the response: not known yet
    tap.open(live=False)  # a fallback of another API answered
    out = encoder.encode(ev.delta("hi"))
    assert out.startswith(b"event: message_start") and b"text_delta" in out


def test_live_frames_go_out_with_the_next_event_and_the_end_adds_nothing() -> None:
    adapter = make_adapter(ADAPTERS["anthropic"], model="m")
    tap = FrameTap("messages")
    encoder = PassThroughEncoder(MessagesStreamEncoder(ROUTE, "rid", model="r"), tap)
    assert encoder.encode(ev.created("rid", "r", "p", "m")) == b""
    pipe = TappedPipeline(adapter, tap)
    data = fixture_bytes("anthropic_basic.sse")
    out = b"".join(encoder.encode(e) for e in pipe.feed(data)) + encoder.close()
    decoder = new_decoder("sse")
    sent = decoder.feed(out)
    assert [(m.event, m.data) for m in sent] == [(m.event, m.data) for m in _frames(data)]


def _tapped(anchors: list[ev.Event | None]) -> FrameTap:
    tap = FrameTap("messages")
    tap.open(live=True)
    for n, anchor in enumerate(anchors):
        tap.frames.append(Message("f", str(n)))
        tap.anchors.append(anchor)
    return tap


def test_take_for_walks_a_long_batch_in_order_and_empties_the_tap() -> None:
    events = [ev.delta(str(n)) for n in range(500)]
    tap = _tapped([a for e in events for a in (e, None)])  # each event's frame, then a ping
    got = [[m.data for m in tap.take_for(e)] for e in events]
    assert got == [[str(2 * n), str(2 * n + 1)] for n in range(500)]
    assert tap.frames == [] and tap.anchors == [] and tap.take_for(ev.delta("x")) == []


def test_take_for_a_terminal_after_a_partial_read_takes_only_the_rest() -> None:
    first, cut, end = ev.delta("a"), ev.delta("b"), ev.end("stop")
    tap = _tapped([first, None, cut, None, end])
    assert [m.data for m in tap.take_for(first)] == ["0", "1"]
    # ``cut`` was never written (the output bound): its frame and what follows it are dropped
    assert [m.data for m in tap.take_for(end)] == ["4"]
    assert tap.frames == [] and tap.take() == []


def test_take_after_a_partial_read_returns_the_untaken_frames() -> None:
    first, second = ev.delta("a"), ev.delta("b")
    tap = _tapped([first, second, None])
    assert [m.data for m in tap.take_for(first)] == ["0"]
    assert [m.data for m in tap.take()] == ["1", "2"]


def test_frames_that_never_drain_fully_stay_bounded() -> None:
    tap = FrameTap("messages")
    tap.open(live=True)
    pending = ev.delta("0")
    tap.frames.append(Message("f", "0"))
    tap.anchors.append(pending)
    for n in range(1, 1000):  # one frame always left behind: the lists never empty
        event = ev.delta(str(n))
        tap.frames.append(Message("f", str(n)))
        tap.anchors.append(event)
        assert [m.data for m in tap.take_for(pending)] == [str(n - 1)]
        pending = event
        assert len(tap.frames) == len(tap.anchors) < 200
    assert [m.data for m in tap.take()] == ["999"]
