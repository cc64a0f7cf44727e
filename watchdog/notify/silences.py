"""Silences: label matchers with an end time and a comment, kept in the state store.

`crdb-watchdog silence add` writes them from its own process; the dispatcher reads the
active ones on every pass (one read of a small, pruned table: microseconds), so a silence
applies at once, without a restart or a reload. A silence mutes firing alerts only: a
resolution still goes out, to close what the page opened (an incident, a ticket).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache

from watchdog.durations import format_duration
from watchdog.store import Matcher, Silence

KEEP_ENDED = timedelta(days=7)
"""How long an ended silence stays listed (`silence list --all`) before it is forgotten."""

_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)(.*)", re.S)


def parse_matcher(text: str) -> Matcher:
    """`name=value`, `name!=value`, `name=~regex` or `name!~regex`; ValueError if not."""
    found = _MATCHER.fullmatch(text)
    if found is None:
        raise ValueError(f"invalid matcher {text!r}: write LABEL=VALUE, LABEL!=VALUE, "
                         "LABEL=~REGEX or LABEL!~REGEX")
    matcher = Matcher(*found.groups())
    if "~" in matcher.op:
        try:
            _pattern(matcher.value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression in {text!r}: {exc}") from None
    return matcher


def new_silence(matchers: Sequence[Matcher], duration: timedelta, comment: str,
                created_by: str, now: datetime) -> Silence:
    """A silence from now on; ValueError if it would silence every alert or end at once.

    Like Alertmanager, some matcher must fail on an absent label: `team=~.*` alone would
    silence everything.
    """
    if duration <= timedelta(0):
        raise ValueError("a silence needs a positive duration")
    if not any(not matches(m, {}) for m in matchers):
        raise ValueError("these matchers match every alert; name a label value to silence")
    return Silence(secrets.token_hex(4), tuple(matchers), now, now + duration, comment,
                   created_by)


def silenced(labels: Mapping[str, str], silences: Iterable[Silence]) -> bool:
    """Whether any of the (active) silences covers an alert with these labels."""
    return any(all(matches(m, labels) for m in s.matchers) for s in silences)


def matches(matcher: Matcher, labels: Mapping[str, str]) -> bool:
    """A missing label is the empty string, as in Alertmanager."""
    value = labels.get(matcher.name, "")
    if matcher.op == "=":
        return value == matcher.value
    if matcher.op == "!=":
        return value != matcher.value
    found = _pattern(matcher.value).fullmatch(value) is not None
    return found if matcher.op == "=~" else not found


def describe(silence: Silence, now: datetime) -> str:
    """One line for `silence list`: id, matchers, end, author and comment."""
    if silence.ends_at > now:
        until = f"ends in {format_duration(_whole_seconds(silence.ends_at - now))}"
    else:
        until = "ended"
    matchers = " ".join(str(m) for m in silence.matchers)
    return (f"{silence.id}  {matchers}  {until} ({silence.ends_at:%Y-%m-%dT%H:%M:%SZ})  "
            f"by {silence.created_by}: {silence.comment}")


def _whole_seconds(length: timedelta) -> timedelta:
    return timedelta(seconds=round(length.total_seconds()))


@lru_cache(maxsize=256)
def _pattern(regex: str) -> re.Pattern[str]:
    return re.compile(regex)
