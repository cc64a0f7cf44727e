"""The one Jinja2 environment rules run in: immutable sandbox, strict names, bounded costs.

Rule authors are trusted to write rules, not to run code or exhaust the host: the immutable
sandbox refuses attribute escapes and mutation of the data, StrictUndefined turns typos into
errors instead of `false`, and the operators and filters that can allocate without bound are
capped or left out.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import StrictUndefined, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from watchdog.durations import format_duration

MAX_SEQUENCE = 100_000
_BINOPS = {"*": operator.mul, "**": operator.pow}
MAX_EXPONENT = 1_000

_UNBOUNDED_FILTERS = ("center", "indent", "format", "wordwrap", "urlize", "xmlattr", "random",
                      "pprint", "safe", "forceescape", "batch", "slice", "lipsum")


class RuleSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with a fast path for the data classes rules read.

    The sandbox vets every attribute access (about 5 µs each); for the fields of the
    snapshot's own frozen data classes, which are plain data by construction, that vetting
    is skipped. It is most of the cost of a round over 1,000 nodes.
    """

    intercepted_binops = frozenset(["*", "**"])

    def __init__(self, data_fields: Mapping[type, frozenset[str]], **options: Any) -> None:
        super().__init__(**options)
        self._data_fields = dict(data_fields)

    def getattr(self, obj: Any, attribute: str) -> Any:
        fields = self._data_fields.get(type(obj))
        if fields is not None and attribute in fields:
            return getattr(obj, attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is above the limit of {MAX_EXPONENT}")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (isinstance(seq, str | list | tuple) and isinstance(times, int)
                        and len(seq) * times > MAX_SEQUENCE):
                    raise SecurityError(f"repetition to {len(seq) * times} items is above "
                                        f"the limit of {MAX_SEQUENCE}")
        return super().call_binop(context, operator, left, right)


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _duration(value: timedelta | float) -> str:
    """`node.metrics['sys.uptime'] | duration` → `3h12m5s` (milliseconds only below 10 s)."""
    seconds = _seconds(value)
    return format_duration(timedelta(seconds=round(seconds, 3 if abs(seconds) < 10 else 0)))


def _bytes(value: float) -> str:
    """Binary units, as CockroachDB's console shows them: `1.5 GiB`."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _percent(value: float, digits: int = 1) -> str:
    """A ratio as a percentage: `0.153 | percent` → `15.3%`."""
    return f"{float(value) * 100:.{digits}f}%"


def _ratio(numerator: float, denominator: float) -> float:
    """`a | ratio(b)`: a / b, and 0 when b is 0 (a missing capacity is not an outage)."""
    return float(numerator) / float(denominator) if denominator else 0.0


@pass_context
def _days_left(context: Context, value: float) -> float:
    """`expiry | days_left`: days from `now` until a Unix time (negative once past)."""
    now: datetime = context["now"]
    return (float(value) - now.timestamp()) / 86400


def _timestamp(value: float) -> datetime:
    """Unix seconds (certificate expirations, build timestamps) as an aware datetime."""
    return datetime.fromtimestamp(float(value), tz=UTC)


def make_environment(data_fields: Mapping[type, frozenset[str]] | None = None, *,
                     autoescape: bool = False) -> RuleSandbox:
    """`data_fields`: plain-data classes and their field names, read without vetting."""
    env = RuleSandbox(data_fields or {}, undefined=StrictUndefined, autoescape=autoescape)
    for name in _UNBOUNDED_FILTERS:
        env.filters.pop(name, None)
        env.globals.pop(name, None)
    env.filters.update(seconds=_seconds, duration=_duration, bytes=_bytes, percent=_percent,
                       ratio=_ratio, timestamp=_timestamp, days_left=_days_left)
    return env
