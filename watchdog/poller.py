"""One poll of one source of one cluster, turned into items for the rules.

The client does HTTP; this stage decides what a poll means: which events are new (the
persisted cursor, so a restart neither replays history nor misses what happened while down),
and whether a failure was the whole cluster (every URL) or just some nodes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from watchdog.client import (
    AuthenticationFailed,
    ClusterClient,
    ClusterError,
    ClusterUnreachable,
    PermissionDenied,
)
from watchdog.config import Source
from watchdog.snapshot import Event, Item

EVENTS_PAGE = 100
EVENTS_MAX_PAGES = 10


@dataclass(frozen=True)
class PollResult:
    source: Source
    items: Sequence[Item] = ()
    error: str | None = None
    cluster_down: bool = False
    """The watchdog could not see the cluster at all: every URL failed, or the cluster
    refused its login or privilege. Such polls count towards ClusterUnreachable: a watchdog
    that is blind to a cluster must say so, whatever the reason."""
    unreported: Mapping[int, str] = field(default_factory=dict)
    """Nodes whose part of a fan-out failed (hot ranges), with the reason: their items are
    missing from this poll, not gone, so their alerts hold."""
    cursor: str | None = None
    """For events: the cursor to store once this poll's events are handled."""

    @property
    def ok(self) -> bool:
        return self.error is None


class SourcePoller:
    def __init__(self, client: ClusterClient) -> None:
        self._client = client

    async def poll(self, source: Source, now: datetime, *, events_since: timedelta,
                   cursor: str | None = None) -> PollResult:
        """Never raises for a cluster problem: the result says what failed.

        Events are those after `cursor`, or on a first start (no cursor) those of the last
        `events_since`; the result carries the cursor to store once they are handled.
        """
        try:
            return await self._fetch(source, now, events_since, cursor)
        except (ClusterUnreachable, AuthenticationFailed, PermissionDenied) as exc:
            return PollResult(source, error=str(exc), cluster_down=True)
        except ClusterError as exc:
            return PollResult(source, error=str(exc))

    async def _fetch(self, source: Source, now: datetime, events_since: timedelta,
                     cursor: str | None) -> PollResult:
        if source == "nodes":
            return PollResult(source, await self._client.nodes())
        if source == "health":
            health = await self._client.identify(await self._client.health())
            if health and not any(item.ok for item in health):
                reasons = "; ".join(f"{item.url}: {item.error}" for item in health)
                return PollResult(source, error=f"no node answered /health/: {reasons}",
                                  cluster_down=True)
            return PollResult(source, health)
        if source == "hot_ranges":
            ranges, node_errors = await self._client.hot_ranges()
            return PollResult(source, ranges, unreported=dict(node_errors))
        events, new_cursor = await self._new_events(cursor, now - events_since)
        return PollResult(source, events, cursor=new_cursor)

    async def _new_events(self, cursor: str | None,
                          first_start_since: datetime) -> tuple[list[Event], str | None]:
        """The API lists newest first, so pages are read until the cursor is reached.

        The cursor is the newest event's time and the ids seen at that time.
        """
        since, seen = _parse_cursor(cursor) if cursor else (first_start_since, set())
        fresh: list[Event] = []
        for page in range(EVENTS_MAX_PAGES):
            events = await self._client.events(limit=EVENTS_PAGE, offset=page * EVENTS_PAGE)
            new = [e for e in events if e.timestamp > since
                   or (e.timestamp == since and e.unique_id not in seen)]
            fresh.extend(new)
            if len(events) < EVENTS_PAGE or len(new) < len(events):
                break
        at = max((e.timestamp for e in fresh), default=since)
        ids = {e.unique_id for e in fresh if e.timestamp == at}
        if at == since:
            ids |= seen
        new_cursor = json.dumps({"at": at.isoformat(), "ids": sorted(ids)})
        return sorted(fresh, key=lambda e: e.timestamp), new_cursor


def _parse_cursor(text: str) -> tuple[datetime, set[str]]:
    value = json.loads(text)
    return datetime.fromisoformat(value["at"]), set(value["ids"])
