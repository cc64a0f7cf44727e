"""Alert instances and their state machine: inactive → pending → firing → resolved.

Like Prometheus `rules/alerting.go`: one small pure function decides each instance's next
state from its previous state and whether its condition holds now. Persistence is the state
store's job; how a page is sent is the notify pipeline's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property


class State(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Timing:
    """A rule's timing: how long a condition must hold, and how long firing outlives it."""

    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    instantaneous: bool = False
    """An event: it fires at once, stays firing for `keep_firing_for`, then ends unannounced."""


@dataclass(frozen=True)
class Finding:
    """One alert instance whose condition holds now, as the rule engine saw it."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


@dataclass(frozen=True)
class Alert:
    """One alert instance and its state; its labels (name, cluster, item, rule) are its identity."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    state: State
    active_at: datetime
    last_true_at: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def cluster(self) -> str:
        return self.labels["cluster"]

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "warning")


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id for a label set (the alert instance's identity)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def advance(previous: Alert | None, finding: Finding | None, timing: Timing,
            now: datetime) -> Alert | None:
    """The next state of one alert instance; None means inactive (nothing to keep)."""
    if finding is not None:
        return _holds(previous, finding, timing, now)
    if previous is None or previous.state is State.PENDING:
        return None
    if previous.state is State.FIRING:
        if now - previous.last_true_at < timing.keep_firing_for:
            return previous
        if timing.instantaneous:
            return None
        return replace(previous, state=State.RESOLVED, resolved_at=now)
    return previous


def _holds(previous: Alert | None, finding: Finding, timing: Timing, now: datetime) -> Alert:
    if previous is None or previous.state is State.RESOLVED:
        pending = Alert(finding.labels, finding.annotations, State.PENDING,
                        active_at=now, last_true_at=now)
        return _fire_if_due(pending, timing, now)
    current = replace(previous, annotations=finding.annotations, last_true_at=now)
    return _fire_if_due(current, timing, now) if current.state is State.PENDING else current


def _fire_if_due(alert: Alert, timing: Timing, now: datetime) -> Alert:
    if now - alert.active_at >= timing.for_:
        return replace(alert, state=State.FIRING, fired_at=now)
    return alert
