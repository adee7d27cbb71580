"""Durations and sizes as people write them in a config file.

Durations: ``250ms``, ``30s``, ``5m``, ``1h`` or a bare number of seconds (``1.5``).
Sizes: ``512`` bytes, ``16KiB``/``16k``, ``1MiB``/``1m``, ``1GiB``/``1g``; every
multiple is a power of 1024, as in nginx. ``dec_hook``/``enc_hook`` plug these into
msgspec; ``enc_hook`` writes the short forms back so a dumped config loads again.
"""

from __future__ import annotations

import math
import re
from typing import Any

from proxy.config.schema import Duration, Size

_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*\Z")
_SECONDS_PER_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"\s*(\d+)\s*(b|k|kib|m|mib|g|gib)?\s*\Z", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
}


def _is_number(value: object) -> bool:
    # bool is an int subclass, but "keepalive_timeout: true" is a mistake, not 1 second.
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_duration(value: object) -> Duration:
    """``"250ms"`` -> 0.25; numbers are seconds. Raises ValueError/TypeError with the reason."""
    if _is_number(value):
        seconds = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        number, unit = float(m.group(1)), m.group(2)
        # Dividing (not multiplying by 0.001) keeps "7ms" the float nearest to 0.007.
        seconds = number / 1000 if unit == "ms" else number * _SECONDS_PER_UNIT[unit]
    elif isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: write e.g. 250ms, 30s, 5m, 1h or a number of seconds")
    else:
        raise TypeError(f"expected a duration (e.g. 30s), got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be a finite number >= 0")
    return Duration(seconds)


def parse_size(value: object) -> Size:
    """``"16KiB"`` -> 16384; integers are bytes. Raises ValueError/TypeError with the reason."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
    elif isinstance(value, str):
        raise ValueError(f"invalid size {value!r}: write e.g. 512, 8k, 16KiB, 1MiB")
    else:
        raise TypeError(f"expected a size (e.g. 16KiB), got {type(value).__name__}")
    if size < 0:
        raise ValueError(f"invalid size {value!r}: must be >= 0")
    return Size(size)


def format_duration(seconds: float) -> str | float:
    """The shortest exact spelling: 3600 -> "1h", 0.25 -> "250ms"; else a bare number."""
    if seconds == 0:
        return "0s"
    for unit, scale in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= scale and (seconds / scale).is_integer():
            return f"{int(seconds // scale)}{unit}"
    millis = round(seconds * 1000)
    if millis / 1000 == seconds:  # exact: parsing f"{millis}ms" gives this float back
        return f"{millis}ms"
    return float(seconds)


def format_size(size: int) -> str | int:
    """1048576 -> "1MiB", 16384 -> "16KiB"; other sizes stay a number of bytes."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return int(size)


def dec_hook(type_: type, value: Any) -> Any:
    """msgspec decode hook for the unit types of the schema."""
    if type_ is Duration:
        return parse_duration(value)
    if type_ is Size:
        return parse_size(value)
    raise NotImplementedError(f"no decoder for {type_!r}")


def enc_hook(value: Any) -> Any:
    """msgspec encode hook: units back to their short spelling."""
    if isinstance(value, Duration):
        return format_duration(value)
    if isinstance(value, Size):
        return format_size(value)
    raise NotImplementedError(f"no encoder for {type(value)!r}")
