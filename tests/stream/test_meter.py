"""The stream's meter (gateway/stream/meter.py) and the pipeline's usage hook it relies on."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import events as ev
from gateway.admission import Admission, Demand
from gateway.config.accounting import PriceOverride
from gateway.events import Event
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.pricing import Pricer
from gateway.request import parse_request
from gateway.state import build_state
from gateway.stream.attempts import Attempt
from gateway.stream.meter import Meter
from gateway.stream.plan import build_attempts
from tests.adapters.harness import fixture_bytes, splits
from tests.support.gateway import config_from

PRICES = [PriceOverride("primary-m", 1.0, 2.0, 0.5, 1.5), PriceOverride("asked", 0, 4.0, 0, 0)]
BODY = {"messages": [{"role": "user", "content": "Hello"}]}


def attempts(body: dict[str, Any] = BODY) -> list[Attempt]:
    doc = {
        "routes": [
            {
                "name": "r",
                "allow_model_override": True,
                "provider": "openai-chat",
                "upstream": {"base_url": "http://x", "model": "primary-m"},
                "fallbacks": [
                    {
                        "provider": "openai-chat",
                        "upstream": {"base_url": "http://y", "model": "unpriced"},
                    }
                ],
            }
        ]
    }
    runtime = build_state(config_from(doc)).routes["r"]
    return build_attempts(runtime, parse_request(body), body)


class Holds:
    """Records what the admission asked of its one hold."""

    def __init__(self) -> None:
        self.kept = 0
        self.released: list[Any] = []

    async def reserve(self, demand: Demand) -> None:
        pass

    def keep(self) -> None:
        self.kept += 1

    def release(self, usage: Any) -> None:
        self.released.append(usage)


def meter(tries: list[Attempt]) -> tuple[Meter, Holds, Metrics]:
    holds, metrics = Holds(), Metrics()
    admission = Admission("web", [holds])
    return Meter(Pricer(PRICES), metrics.accounting, admission, "r"), holds, metrics


def cost_total(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "gateway_cost_usd_total", {"route": "r", "app": "web"}
    )
    return value or 0.0


def test_the_usage_hook_runs_once_per_usage_event_never_per_content_event() -> None:
    tries = attempts()
    seen: list[Event] = []

    def hook(event: Event) -> Event:
        seen.append(event)
        return Event(ev.USAGE, {**event.data, "marked": True})

    data = fixture_bytes("openai_chat_cache_usage.sse")
    for label, chunks in splits(data):
        seen.clear()
        pipe = Pipeline(tries[0].adapter, on_usage=hook)
        out = [e for c in chunks for e in pipe.feed(c)] + pipe.close()
        usage = [e for e in out if e.type == ev.USAGE]
        assert len(seen) == 1 and len(usage) == 1, label
        assert usage[0].data["marked"] is True and usage[0].data["input_tokens"] == 2006
        assert sum(e.type == ev.DELTA for e in out) > 1


def test_the_served_model_is_priced() -> None:
    tries = attempts({**BODY, "model": "asked"})
    # The override is the primary's; a fallback calls (and is priced at) its own model.
    assert [t.model for t in tries] == ["asked", "unpriced"]
    assert b'"model":"unpriced"' in tries[1].request.body  # type: ignore[union-attr]
    m, _, _ = meter(tries)
    usage = ev.usage(input_tokens=100, output_tokens=10)
    primary = m.hook(tries[0])
    assert primary is not None
    assert primary(usage).data["cost_usd"] == pytest.approx(10 * 4.0 / 1e6, rel=1e-12)
    assert m.hook(tries[1]) is None  # no price: no hook, the usage passes unchanged


def test_split_usage_events_are_priced_on_their_merged_counts() -> None:
    tries = attempts()
    m, _, _ = meter(tries)
    hook = m.hook(tries[0])
    assert hook is not None
    assert "cost_usd" not in hook(ev.usage(input_tokens=1000, cache_read_input_tokens=400)).data
    last = hook(ev.usage(output_tokens=50)).data
    assert last["cost_usd"] == pytest.approx((600 * 1.0 + 400 * 0.5 + 50 * 2.0) / 1e6, rel=1e-12)


def test_settles_once_at_the_end() -> None:
    m, holds, metrics = meter(attempts())
    usage = {"input_tokens": 1, "output_tokens": 2, "cost_usd": 0.25}
    m.finished(usage)
    m.finished(usage)
    m.settle(usage)
    assert holds.released == [usage] and holds.kept == 0
    assert cost_total(metrics) == 0.25


def test_a_drain_settles_instead_of_the_session() -> None:
    m, holds, metrics = meter(attempts())
    settle = m.hand_to_drain()
    assert holds.kept == 1
    m.finished({"input_tokens": 1})  # the session ends first: nothing settled yet
    assert holds.released == [] and cost_total(metrics) == 0
    whole = {"input_tokens": 1, "output_tokens": 9, "cost_usd": 0.5}
    settle(whole)
    assert holds.released == [whole] and cost_total(metrics) == 0.5


def test_without_a_pricer_there_is_no_hook() -> None:
    tries = attempts()
    m = Meter(None, Metrics().accounting, Admission(), "r")
    assert m.hook(tries[0]) is None


@pytest.mark.parametrize(
    ("results", "charged"),
    [
        ([("a", "status_error")], False),  # a 429 or 5xx: nothing generated, nothing billed
        ([("a", "connect_error"), ("b", "status_error")], False),
        ([("a", "timeout")], True),  # the upstream may have worked on it: the reservation
        ([("a", "status_error"), ("b", "ok")], True),  # served, but no usage came
        ([], True),  # gone before any attempt ended (a client abort)
    ],
)
def test_a_stream_every_upstream_refused_settles_at_zero(
    results: list[tuple[str, str]], charged: bool
) -> None:
    m, holds, metrics = meter(attempts())
    m.finished({}, results)
    _assert_settled(holds, metrics, charged)


@pytest.mark.parametrize(
    "results",
    [
        [("a", "status_error")],  # the answering fallback was still held when the client left
        [("a", "connect_error")],  # cut after its 2xx, before any content
    ],
)
def test_a_stream_an_upstream_answered_is_never_settled_at_zero(
    results: list[tuple[str, str]],
) -> None:
    tries = attempts()
    m, holds, metrics = meter(tries)
    m.hook(tries[1])  # an upstream answered 2xx (unpriced: the hook is None all the same)
    m.finished({}, results)
    _assert_settled(holds, metrics, charged=True)


def _assert_settled(holds: Holds, metrics: Metrics, charged: bool) -> None:
    (usage,) = holds.released
    if charged:
        assert usage == {}  # no cost: budgets charge the reservation
    else:
        assert usage == {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    assert cost_total(metrics) == 0


def test_a_built_in_source_is_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    # `make run`'s demo route logged price_unknown for provider simulated, model "": a warning
    # a new user cannot act on.
    doc = {"routes": [{"name": "demo", "provider": "simulated"}]}
    runtime = build_state(config_from(doc)).routes["demo"]
    (attempt,) = build_attempts(runtime, parse_request(BODY), BODY)
    m = Meter(Pricer(PRICES), Metrics().accounting, Admission(), "demo")
    with caplog.at_level("WARNING", logger="gateway"):
        assert m.hook(attempt) is None
    assert "price_unknown" not in caplog.text
    tries = attempts()
    with caplog.at_level("WARNING", logger="gateway"):
        assert m.hook(tries[1]) is None  # an upstream model without a price is still warned of
    assert "price_unknown" in caplog.text
