"""Durations and sizes with units (gateway/config/units.py)."""

from __future__ import annotations

import math

import pytest

from gateway.config.units import MAX_BYTES, MAX_SECONDS, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (15, 15.0),
        (0.25, 0.25),
        (0, 0.0),
        ("250ms", 0.25),
        ("15s", 15.0),
        ("2m", 120.0),
        ("1.5h", 5400.0),
        ("15", 15.0),
        (" 10 s ", 10.0),
        (".5s", 0.5),
        ("0s", 0.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    "bad", ["15x", "fast", "", "s", "1.2.3s", "15 sec", "1d", True, None, [1], "15S"]
)
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [-1, -0.5, "-5s", "-250ms"])
def test_negative_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_non_finite_durations(bad: float) -> None:
    with pytest.raises(ValueError, match="must be finite"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (65536, 65536),
        (0, 0),
        ("512B", 512),
        ("512", 512),
        ("64KB", 64_000),
        ("1MB", 1_000_000),
        ("1.1MB", 1_100_000),
        ("2GB", 2_000_000_000),
        ("64KiB", 65_536),
        ("1MiB", 1_048_576),
        ("1.5MiB", 1_572_864),
        ("1GiB", 1_073_741_824),
        ("4 mib", 4 * 1_048_576),
        ("0.5KB", 500),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size
    assert type(parse_size(text)) is int


@pytest.mark.parametrize("bad", ["1TB", "1 megabyte", "MiB", "", "1.5", 1.5, True, None, {}])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(bad)


def test_size_must_be_whole_bytes() -> None:
    with pytest.raises(ValueError, match="not a whole number of bytes"):
        parse_size("1.5B")


@pytest.mark.parametrize("bad", [-1, "-1KB"])
def test_negative_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_size(bad)


def test_duration_ceiling() -> None:
    # A Redis expiry in milliseconds must fit 64 bits: 1e23 s was accepted, then failed each request.
    assert parse_duration(MAX_SECONDS) == MAX_SECONDS
    assert parse_duration("87600h") == MAX_SECONDS
    for bad in (MAX_SECONDS + 1, "99999999999999999999999s", 1e300):
        with pytest.raises(ValueError, match="at most 315360000s: 10 years"):
            parse_duration(bad)


def test_size_ceiling() -> None:
    # A write buffer past a C long failed every stream with an internal error.
    assert parse_size("1024GiB") == MAX_BYTES
    for bad in (MAX_BYTES + 1, "1025GiB", 99999999999999999999999):
        with pytest.raises(ValueError, match="at most 1TiB"):
            parse_size(bad)
