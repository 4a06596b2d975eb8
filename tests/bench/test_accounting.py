"""``bench.accounting`` runs against the gateway's current meter (it once called an old
signature and only ``make bench`` would have found out)."""

from __future__ import annotations

from bench import accounting


def test_stream_accounting_times_a_whole_meter() -> None:
    assert accounting.stream_accounting(budget=0.05) > 0


def test_per_event_prices_the_usage_and_times_both_pipelines() -> None:
    figures = accounting.per_event(rounds=1, streams=3)
    assert set(figures) == {"pipeline_without_cost", "pipeline_with_cost"}
    assert all(value > 0 for value in figures.values())


def test_cost_per_stream_names_its_figures() -> None:
    figures = accounting.cost_per_stream(budget=0.05)
    assert figures and all(value > 0 for value in figures.values())
