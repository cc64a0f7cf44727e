"""Flap detection: an alert that keeps firing and resolving is announced once as flapping,
then kept quiet until it is stable again.

The state changes are read off the alerts (each `fired_at`, each `resolved_at`), so the
alert state stage needs no hook. They live in the state store, one small row per alert that
changed within the window: a restart neither forgets that an alert flaps (and pages it
again) nor restarts its count, and alert rows, which go soon after a resolution, stay the
tracker's alone. Nagios-style hysteresis: flapping from `high` changes within the window,
stable again at `low` changes or fewer.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from watchdog.alerts import Alert
from watchdog.config import FlappingConfig
from watchdog.store import FlapRecord, Store


class FlapDetector:
    def __init__(self, config: FlappingConfig | None, store: Store) -> None:
        """`config` None: detection off."""
        self._config = config
        self._store = store
        self._records = store.flap_records() if config else {}

    def update(self, alerts: Iterable[Alert], now: datetime) -> set[str]:
        """Record the alerts' state changes; the fingerprints of those flapping now.

        Writes to the store only when a record changes (a new change, a change leaving the
        window, flapping starting or ending).
        """
        if self._config is None:
            return set()
        changes = {alert.fingerprint: state_changes(alert) for alert in alerts}
        changed: dict[str, FlapRecord] = {}
        removed: list[str] = []
        for fp in changes.keys() | self._records.keys():
            old = self._records.get(fp)
            new = next_flap_record(old, changes.get(fp, ()), now, self._config)
            if new is None:
                removed.append(fp)
            elif new != old:
                changed[fp] = new
        if changed or removed:
            self._store.save_flaps(changed, removed)
            self._records.update(changed)
            for fp in removed:
                self._records.pop(fp, None)
        return {fp for fp, record in self._records.items() if record.flapping_since}


def next_flap_record(record: FlapRecord | None, changes: Iterable[datetime], now: datetime,
                     config: FlappingConfig) -> FlapRecord | None:
    """The record with `changes` added and those out of the window dropped, flapping or not
    by the thresholds; None when there is nothing left to remember."""
    horizon = now - config.window
    known = record.changes if record else ()
    kept = tuple(sorted({at for at in (*known, *changes) if at > horizon}))
    since = record.flapping_since if record else None
    if len(kept) >= config.high:
        since = since or now
    elif len(kept) <= config.low:
        since = None
    if not kept and since is None:
        return None
    return FlapRecord(kept, since)


def state_changes(alert: Alert) -> tuple[datetime, ...]:
    """When the alert fired and, once resolved, when it resolved: one change each.

    To the millisecond, so that a time read back from the store is the same change.
    """
    return tuple(_millisecond(at) for at in (alert.fired_at, alert.resolved_at) if at)


def _millisecond(at: datetime) -> datetime:
    return datetime.fromtimestamp(round(at.timestamp(), 3), tz=UTC)
