"""Durations as operators write them: `500ms`, `10s`, `5m`, `1h30m`, `7d`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text; raise ValueError naming the accepted units otherwise."""
    compact = text.strip()
    pos, seconds = 0, 0.0
    for match in _PART.finditer(compact):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit "
                         "(ms, s, m, h, d, w), such as 500ms, 10s, 5m or 1h30m")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest `1h30m`-style text for a duration (whole milliseconds)."""
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _coerce(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise ValueError(f"invalid duration {value!r}: write it as text such as 10s or 5m")
    if isinstance(value, int | float):
        if value != 0:
            raise ValueError(f"invalid duration {value!r}: give a unit, such as {value}s")
        return timedelta(0)
    return value


Duration = Annotated[timedelta, BeforeValidator(_coerce), PlainSerializer(format_duration)]
