"""Durations and sizes as written in config files."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config.schema import Duration, Size
from proxy.config.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5m", 90.0),
        (" 7ms ", 0.007),
        ("30", 30.0),
        (".5", 0.5),
        (0, 0.0),
        (2, 2.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    value = parse_duration(text)
    assert value == seconds
    assert type(value) is Duration


@pytest.mark.parametrize("text", ["5 parsecs", "", "m", "-1s", "1d", "1s2", "ms5"])
def test_parse_duration_rejects_text(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [True, None, [1], {"s": 1}])
def test_parse_duration_rejects_other_types(value: object) -> None:
    with pytest.raises(TypeError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan")])
def test_parse_duration_rejects_out_of_range(value: float) -> None:
    with pytest.raises(ValueError, match="finite number >= 0"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        (512, 512),
        ("8k", 8192),
        ("8K", 8192),
        ("16KiB", 16384),
        ("1MiB", 1 << 20),
        ("1m", 1 << 20),
        ("2GiB", 2 << 30),
        ("10b", 10),
        ("0", 0),
    ],
)
def test_parse_size(text: object, size: int) -> None:
    value = parse_size(text)
    assert value == size
    assert type(value) is Size


@pytest.mark.parametrize("value", ["16KB", "1.5MiB", "-1", "k", "", True, 1.5, None])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises((ValueError, TypeError), match="size"):
        parse_size(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (30, "30s"),
        (90, "90s"),
        (300, "5m"),
        (3600, "1h"),
        (5400, "90m"),
        (0.0005, 0.0005),
    ],
)
def test_format_duration(seconds: float, text: object) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"), [(0, 0), (512, 512), (1536, 1536), (1024, "1KiB"), (3 << 20, "3MiB"), (1 << 30, "1GiB")]
)
def test_format_size(size: int, text: object) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_in_milliseconds_round_trips(millis: int) -> None:
    seconds = parse_duration(f"{millis}ms")
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_any_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=1 << 40))
def test_size_round_trips(size: int) -> None:
    assert parse_size(format_size(size)) == size
