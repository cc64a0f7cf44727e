"""The alert state stage: every alert instance, advanced once per evaluation and persisted.

Instances a rule could not decide this round (its expression failed on that item) and the
instances of a source that could not be polled are simply not touched: no data is not good
data, so nothing resolves and nothing fires on a failure.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from watchdog.alerts import Alert, Finding, State, Timing, advance
from watchdog.store import Store


class AlertTracker:
    def __init__(self, store: Store, resolved_retention: timedelta) -> None:
        self._store = store
        self._retention = resolved_retention
        self._alerts = store.load_alerts()

    def alerts(self) -> list[Alert]:
        return list(self._alerts.values())

    def apply(self, alertname: str, cluster: str, timing: Timing, findings: Iterable[Finding],
              undecided: set[str], now: datetime) -> list[Alert]:
        """Advance one rule's instances in one cluster; returns those whose state changed."""
        found = {finding.fingerprint: finding for finding in findings}
        current = {fp for fp, alert in self._alerts.items()
                   if alert.name == alertname and alert.cluster == cluster}
        updated: list[Alert] = []
        removed: list[str] = []
        transitions: list[Alert] = []
        for fp in current | found.keys():
            if fp in undecided and fp not in found:
                continue
            previous = self._alerts.get(fp)
            alert = advance(previous, found.get(fp), timing, now)
            if alert is None:
                if previous is not None:
                    removed.append(fp)
                continue
            if alert.state is State.RESOLVED and alert.resolved_at and \
                    now - alert.resolved_at > self._retention:
                removed.append(fp)
                continue
            if alert != previous:
                updated.append(alert)
            if previous is None or previous.state is not alert.state:
                transitions.append(alert)
        self._store.save_alerts(updated, removed)
        for fp in removed:
            del self._alerts[fp]
        self._alerts.update((alert.fingerprint, alert) for alert in updated)
        return transitions
