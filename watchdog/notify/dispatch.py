"""Dispatch: alerts into groups, groups into outbox entries, when there is something to say.

Alertmanager's `notify/notify.go` stages as small functions: route and group the alerts,
wait (`group_wait`, then `group_interval`), deduplicate against what each channel was last
told (the persisted notification log, so a restart neither re-pages nor forgets a
resolution), render per channel format, and queue the outbox entries together with the new
log records in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from watchdog.alerts import Alert, State
from watchdog.config import Config, RouteConfig
from watchdog.notify.render import Renderer
from watchdog.notify.routing import group_key, routes_for
from watchdog.store import NotifyRecord, OutboxEntry, Store

logger = logging.getLogger(__name__)

# Apprise NotifyType values, by severity; the most severe firing alert picks the type.
_NOTIFY_TYPES = {"critical": "failure", "warning": "warning", "info": "info"}
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


@dataclass
class Group:
    """The alerts of one route that share a group key, notified together."""

    route: RouteConfig
    firing: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)

    @property
    def firing_set(self) -> frozenset[str]:
        return frozenset(alert.fingerprint for alert in self.firing)

    @property
    def resolved_set(self) -> frozenset[str]:
        return frozenset(alert.fingerprint for alert in self.resolved)


class Dispatcher:
    def __init__(self, config: Config, store: Store, renderer: Renderer) -> None:
        self._routes = config.routes
        self._channels = config.channels
        self._store = store
        self._renderer = renderer
        self._first_seen: dict[str, datetime] = {}
        self._flushed: set[str] = set()
        self._unrouted: set[str] = set()

    def dispatch(self, alerts: Iterable[Alert], now: datetime) -> list[OutboxEntry]:
        """Queue what is due now and return the queued entries.

        Call it after each evaluation round and on a short tick, with every alert held:
        pending ones are ignored, resolved ones matter until the caller drops them.
        """
        groups = self._group(alerts)
        self._first_seen = {key: self._first_seen.get(key, now) for key in groups}
        self._flushed &= groups.keys()
        entries: list[OutboxEntry] = []
        records: dict[tuple[str, str], NotifyRecord] = {}
        for key, group in groups.items():
            if now < self._first_seen[key] + group.route.group_wait:
                continue
            first_flush = key not in self._flushed
            self._flushed.add(key)
            for channel in group.route.channels:
                previous = self._store.notify_record(key, channel)
                record = next_record(previous, group, now, first_flush=first_flush)
                if record is not None:
                    records[key, channel] = record
                    announced = record.resolved - (previous.resolved if previous else set())
                    resolved = [a for a in group.resolved if a.fingerprint in announced]
                    entries += self._entries(channel, group.firing, resolved, now)
        if records:
            self._store.dispatch(entries, records)
        return entries

    def _group(self, alerts: Iterable[Alert]) -> dict[str, Group]:
        groups: dict[str, Group] = {}
        for alert in alerts:
            if alert.state is State.PENDING:
                continue
            routes = routes_for(alert.labels, self._routes)
            if not routes:
                self._warn_unrouted(alert)
            for route in routes:
                key = group_key(self._index(route), route, alert.labels)
                group = groups.setdefault(key, Group(route))
                (group.firing if alert.state is State.FIRING else group.resolved).append(alert)
        return groups

    def _index(self, route: RouteConfig) -> int:
        return next(i for i, candidate in enumerate(self._routes) if candidate is route)

    def _warn_unrouted(self, alert: Alert) -> None:
        """Say once per alert that no route takes it: nothing is dropped silently."""
        if alert.fingerprint not in self._unrouted:
            self._unrouted.add(alert.fingerprint)
            logger.warning("alert %s %s matches no route: not notified",
                           alert.name, dict(alert.labels))

    def _entries(self, channel: str, firing: Sequence[Alert], resolved: Sequence[Alert],
                 now: datetime) -> list[OutboxEntry]:
        """One entry per URL of the channel, rendered in the channel's format."""
        config = self._channels[channel]
        title, body = self._renderer.render(firing, resolved, config.format, now=now)
        kind = notify_type(firing)
        return [OutboxEntry(channel=channel, url=url.get_secret_value(), title=title, body=body,
                            body_format=config.format, notify_type=kind, created_at=now,
                            next_attempt_at=now)
                for url in config.urls]


def next_record(previous: NotifyRecord | None, group: Group, now: datetime, *,
                first_flush: bool) -> NotifyRecord | None:
    """What the channel will have been told after notifying now, or None: nothing to say yet.

    Like Alertmanager's DedupStage: notify when an alert fires that was not notified firing,
    when one notified firing has resolved (a resolution never paged is not news), or when
    the group still fires and `repeat_interval` has passed. A group's first flush comes
    after `group_wait`; later ones never within `group_interval` of the last send.
    """
    firing, resolved = group.firing_set, group.resolved_set
    if previous is None:
        return NotifyRecord(firing, frozenset(), now) if firing else None
    if not first_flush and now < previous.sent_at + group.route.group_interval:
        return None
    newly_resolved = (resolved & previous.firing) - previous.resolved
    repeat = bool(firing) and now >= previous.sent_at + group.route.repeat_interval
    if firing <= previous.firing and not newly_resolved and not repeat:
        return None
    return NotifyRecord(firing, newly_resolved | (previous.resolved & resolved), now)


def notify_type(firing: Sequence[Alert]) -> str:
    """The Apprise type of a notification: the most severe firing alert's, or success."""
    if not firing:
        return "success"
    worst = min((alert.severity for alert in firing), key=lambda s: _SEVERITY_RANK.get(s, 1))
    return _NOTIFY_TYPES.get(worst, "warning")
