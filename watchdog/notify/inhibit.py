"""Inhibition: a firing alert mutes the alerts it already explains (Alertmanager's inhibitor).

Built in: `ClusterUnreachable` mutes every other alert of its cluster (nothing is known
while no node answers), and `NodeLivenessLost` mutes `NodeUnreachable` and `NodeNotReady`
of the same node (the liveness page already says it). The config's `inhibit:` rules add to
these. Like a silence, inhibition mutes firing alerts only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from watchdog.alerts import Alert, State
from watchdog.config import InhibitRule
from watchdog.notify.routing import matches

BUILTIN = (
    InhibitRule.model_validate({
        "source": {"match": {"alertname": "ClusterUnreachable"}}, "equal": ["cluster"]}),
    InhibitRule.model_validate({
        "source": {"match": {"alertname": "NodeLivenessLost"}},
        "target": {"match_re": {"alertname": "NodeUnreachable|NodeNotReady"}},
        "equal": ["cluster", "node_id"]}),
)


def inhibited(alerts: Iterable[Alert], rules: Sequence[InhibitRule]) -> set[str]:
    """The fingerprints of the firing alerts that some rule mutes."""
    firing = [alert for alert in alerts if alert.state is State.FIRING]
    muted: set[str] = set()
    for rule in rules:
        muted |= _muted_by(rule, firing)
    return muted


def _muted_by(rule: InhibitRule, firing: Sequence[Alert]) -> set[str]:
    """As in Alertmanager, an alert matching both sides is muted only by a source that does
    not match the target side too: it never mutes itself, nor do two such alerts mute
    each other (two ClusterUnreachable of one cluster)."""
    sources: dict[tuple[str, ...], set[bool]] = {}
    for alert in firing:
        if matches(alert.labels, rule.source):
            key = _equal_values(alert, rule.equal)
            sources.setdefault(key, set()).add(matches(alert.labels, rule.target))
    if not sources:
        return set()
    muted = set()
    for alert in firing:
        if not matches(alert.labels, rule.target):
            continue
        also_targets = sources.get(_equal_values(alert, rule.equal), set())
        is_source = matches(alert.labels, rule.source)
        if also_targets - ({True} if is_source else set()):
            muted.add(alert.fingerprint)
    return muted


def _equal_values(alert: Alert, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(alert.labels.get(name, "") for name in names)
