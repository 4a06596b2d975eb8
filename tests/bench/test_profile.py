"""bench.profile: py-spy's collapsed stacks summarised per function and per module."""

from __future__ import annotations

from bench.profile import summarise_stacks
from bench.report import profile_tables

RAW = """\
main (gateway/cli.py:10);run (gateway/server.py:20);write (gateway/httpserver.py:326) 6
main (gateway/cli.py:10);run (gateway/server.py:20);write (gateway/httpserver.py:330) 2
main (gateway/cli.py:10);run (gateway/server.py:21) 1
main (gateway/cli.py:10);feed (gateway/adapters/openai_chat.py:200) 1
not a stack line
"""


def test_self_shares_merge_the_lines_of_one_function() -> None:
    summary = summarise_stacks(RAW)
    assert summary["samples"] == 10
    assert summary["self"][0] == ("write (gateway/httpserver.py)", 80.0)
    assert dict(summary["self"])["run (gateway/server.py)"] == 10.0


def test_inclusive_shares_count_a_frame_once_per_stack() -> None:
    inclusive = dict(summarise_stacks(RAW)["inclusive"])
    assert inclusive["main (gateway/cli.py)"] == 100.0
    assert inclusive["run (gateway/server.py)"] == 90.0


def test_module_shares_are_the_leaf_frames_files() -> None:
    modules = summarise_stacks(RAW)["modules"]
    assert modules == [
        ("gateway/httpserver.py", 80.0),
        ("gateway/server.py", 10.0),
        ("gateway/adapters/openai_chat.py", 10.0),
    ]


def test_no_samples() -> None:
    assert summarise_stacks("")["modules"] == []


def test_the_report_lists_the_modules() -> None:
    table = profile_tables({"chat-1": summarise_stacks(RAW)})
    assert "By module (self %): `gateway/httpserver.py` 80.0" in table
