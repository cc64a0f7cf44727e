"""Dispatch: alerts into groups, groups into outbox entries, when there is something to say.

Alertmanager's `notify/notify.go` stages as small functions: mute (silences and inhibition),
mark flapping alerts, route and group, wait (`group_wait`, then `group_interval`),
deduplicate against what each channel was last told (the persisted notification log, so a
restart neither re-pages nor forgets a resolution), render per channel format, and queue
the outbox entries together with the new log records in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from watchdog.alerts import Alert, State
from watchdog.config import Config, RouteConfig
from watchdog.notify.context import RECENT
from watchdog.notify.flapping import FlapDetector
from watchdog.notify.inhibit import BUILTIN, inhibited
from watchdog.notify.render import Notice, Renderer
from watchdog.notify.routing import group_key, routes_for
from watchdog.notify.silences import silenced
from watchdog.store import NotifyRecord, OutboxEntry, Store

logger = logging.getLogger(__name__)

# Apprise NotifyType values, by severity; the most severe firing alert picks the type.
_NOTIFY_TYPES = {"critical": "failure", "warning": "warning", "info": "info"}
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}

Kind = Literal["firing", "resolved", "muted", "flapping"]


@dataclass
class Group:
    """The alerts of one route that share a group key, notified together, by kind: `muted`
    ones fire but are silenced or inhibited; `flapping` ones change state too often."""

    route: RouteConfig
    firing: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    muted: list[Alert] = field(default_factory=list)
    flapping: list[Alert] = field(default_factory=list)

    def add(self, alert: Alert, kind: Kind) -> None:
        getattr(self, kind).append(alert)

    def fingerprints(self, kind: Kind) -> frozenset[str]:
        alerts: list[Alert] = getattr(self, kind)
        return frozenset(alert.fingerprint for alert in alerts)


@dataclass(frozen=True)
class Decision:
    """What a group's channel will have been told, and whether that takes a notification
    now (a muting only updates the record)."""

    record: NotifyRecord
    notify: bool


class Dispatcher:
    def __init__(self, config: Config, store: Store, renderer: Renderer) -> None:
        self._routes = config.routes
        self._channels = config.channels
        self._inhibit = [*BUILTIN, *config.inhibit]
        self._store = store
        self._renderer = renderer
        self._flaps = FlapDetector(config.flapping, store)
        self._first_seen: dict[str, datetime] = {}
        self._flushed: set[str] = set()
        self._unrouted: set[str] = set()

    def dispatch(self, alerts: Iterable[Alert], now: datetime) -> list[OutboxEntry]:
        """Queue what is due now and return the queued entries.

        Call it after each evaluation round and on a short tick, with every alert held:
        pending ones are ignored, resolved ones matter until the caller drops them.
        """
        held = [alert for alert in alerts if alert.state is not State.PENDING]
        muted = self._muted(held, now)
        flapping = self._flaps.update(held, now)
        groups = self._group(held, lambda alert: _kind(alert, muted, flapping))
        records, notices = self._decide(self._due(groups, now), now)
        entries = self._entries(notices, now) if notices else []
        if records:
            self._store.dispatch(entries, records)
        return entries

    def _due(self, groups: dict[str, Group],
             now: datetime) -> list[tuple[str, Group, bool]]:
        """The groups past their `group_wait`, each with whether this is its first flush."""
        self._first_seen = {key: self._first_seen.get(key, now) for key in groups}
        self._flushed &= groups.keys()
        due = []
        for key, group in groups.items():
            if now >= self._first_seen[key] + group.route.group_wait:
                due.append((key, group, key not in self._flushed))
                self._flushed.add(key)
        return due

    def _decide(self, due: Iterable[tuple[str, Group, bool]], now: datetime,
                ) -> tuple[dict[tuple[str, str], NotifyRecord], list[tuple[str, Notice]]]:
        """Each channel's new record, and the notices to send, against the log."""
        records: dict[tuple[str, str], NotifyRecord] = {}
        notices: list[tuple[str, Notice]] = []
        for key, group, first_flush in due:
            for channel in group.route.channels:
                previous = self._store.notify_record(key, channel)
                decision = next_record(previous, group, now, first_flush=first_flush)
                if decision is None:
                    continue
                records[key, channel] = decision.record
                if decision.notify:
                    notices.append((channel, _notice(group, previous, decision.record)))
        return records, notices

    def _muted(self, alerts: Sequence[Alert], now: datetime) -> set[str]:
        """Firing alerts that a silence or an inhibit rule mutes. Silences are read from the
        store on each pass, so one added by the CLI applies at once."""
        silences = self._store.silences(active_at=now)
        muted = inhibited(alerts, self._inhibit)
        if silences:
            muted |= {alert.fingerprint for alert in alerts
                      if alert.state is State.FIRING and silenced(alert.labels, silences)}
        return muted

    def _group(self, alerts: Iterable[Alert],
               kind_of: Callable[[Alert], Kind]) -> dict[str, Group]:
        groups: dict[str, Group] = {}
        for alert in alerts:
            routes = routes_for(alert.labels, self._routes)
            if not routes:
                self._warn_unrouted(alert)
            kind = kind_of(alert)
            for route in routes:
                key = group_key(self._index(route), route, alert.labels)
                groups.setdefault(key, Group(route)).add(alert, kind)
        return groups

    def _index(self, route: RouteConfig) -> int:
        return next(i for i, candidate in enumerate(self._routes) if candidate is route)

    def _warn_unrouted(self, alert: Alert) -> None:
        """Say once per alert that no route takes it: nothing is dropped silently."""
        if alert.fingerprint not in self._unrouted:
            self._unrouted.add(alert.fingerprint)
            logger.warning("alert %s %s matches no route: not notified",
                           alert.name, dict(alert.labels))

    def _entries(self, notices: Sequence[tuple[str, Notice]],
                 now: datetime) -> list[OutboxEntry]:
        """One entry per URL of each channel, rendered in the channel's format, with the
        node directory and recent events read once for all of them."""
        nodes, events = self._store.nodes(), self._store.recent_events(now - RECENT)
        entries = []
        for channel, notice in notices:
            config = self._channels[channel]
            notice = replace(notice, nodes=nodes, events=events)
            title, body = self._renderer.render(notice, config.format, now=now)
            kind = notify_type(notice)
            entries += [OutboxEntry(channel=channel, url=url.get_secret_value(), title=title,
                                    body=body, body_format=config.format, notify_type=kind,
                                    created_at=now, next_attempt_at=now)
                        for url in config.urls]
        return entries


def next_record(previous: NotifyRecord | None, group: Group, now: datetime, *,
                first_flush: bool) -> Decision | None:
    """What the channel is to be told now, or None: nothing to say, nothing to record.

    Like Alertmanager's DedupStage: notify when an alert fires that the channel was not told
    is firing (also when its silence or inhibition ends: it was muted meanwhile), when one
    the channel was told about has resolved, when one starts flapping, or when the group
    still fires and `repeat_interval` has passed. A group's first flush comes after
    `group_wait`; later ones never within `group_interval` of the last send. An alert the
    channel was told fires and that is now muted is recorded as such, without a message.
    """
    firing, resolved = group.fingerprints("firing"), group.fingerprints("resolved")
    muted, flapping = group.fingerprints("muted"), group.fingerprints("flapping")
    if previous is None:
        if firing or flapping:
            return Decision(NotifyRecord(firing, frozenset(), now, flapping=flapping), True)
        return None
    told = previous.firing | previous.muted | previous.flapping
    if first_flush or now >= previous.sent_at + group.route.group_interval:
        newly_resolved = (resolved & told) - previous.resolved
        repeat = bool(firing) and now >= previous.sent_at + group.route.repeat_interval
        if not firing <= previous.firing or not flapping <= previous.flapping \
                or newly_resolved or repeat:
            record = NotifyRecord(firing, newly_resolved | (previous.resolved & resolved), now,
                                  muted & told, flapping)
            return Decision(record, True)
    newly_muted = (muted & told) - previous.muted
    if newly_muted:
        return Decision(replace(previous, firing=previous.firing - newly_muted,
                                flapping=previous.flapping - newly_muted,
                                muted=previous.muted | newly_muted), False)
    return None


def notify_type(notice: Notice) -> str:
    """The Apprise type of a notification: the most severe firing alert's; warning for
    flapping alerts alone; success for resolutions alone."""
    if not notice.firing:
        return "warning" if notice.flapping else "success"
    worst = min((alert.severity for alert in notice.firing),
                key=lambda s: _SEVERITY_RANK.get(s, 1))
    return _NOTIFY_TYPES.get(worst, "warning")


def _notice(group: Group, previous: NotifyRecord | None, record: NotifyRecord) -> Notice:
    """The group's firing and flapping alerts, and the resolutions announced for the first
    time (a resolution never paged is not news)."""
    announced = record.resolved - (previous.resolved if previous else frozenset())
    resolved = [alert for alert in group.resolved if alert.fingerprint in announced]
    return Notice(firing=group.firing, resolved=resolved, flapping=group.flapping)


def _kind(alert: Alert, muted: set[str], flapping: set[str]) -> Kind:
    if alert.fingerprint in muted:
        return "muted"
    if alert.fingerprint in flapping:
        return "flapping"
    return "firing" if alert.state is State.FIRING else "resolved"

