"""Delivery: send due outbox entries through Apprise, one URL each, and record the outcome.

An entry leaves the outbox only when Apprise reports that service delivered; otherwise it
is retried with exponential backoff, keeping the reason, and once it has been undeliverable
for `fallback_after` it is also queued, once, to the `fallback` channel (if one is set).
Apprise pitfalls handled here:
plugins sleep 5.5 s between sends of one instance (email, ntfy, and any plugin that keeps
the default), per-service failure reasons are captured only while the `apprise` logger
lets WARNING through, and its masked URLs keep query parameters (headers) in the clear.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import apprise

from watchdog.config import ChannelConfig, DeliveryConfig
from watchdog.durations import format_duration
from watchdog.notify.render import Format
from watchdog.store import OutboxEntry, Store

logger = logging.getLogger(__name__)

_DEFAULT_TIMEOUT = DeliveryConfig().timeout


class _HideQueries(logging.Filter):
    """Cut query strings from URLs in Apprise's log lines: Apprise masks passwords and tokens
    but leaves `json://` headers and payload fields (`?+X-Token=…`) in the clear."""

    _QUERY = re.compile(r"([a-z][a-z0-9+.-]*://[^\s?]*)\?[^\s'\"]*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = self._QUERY.sub(r"\1?…", message)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


logging.getLogger("apprise").addFilter(_HideQueries())


@dataclass(frozen=True)
class DeliveryResult:
    """One attempt to deliver to one URL; `url` has its secrets masked."""

    entry_id: int | None
    channel: str
    url: str
    ok: bool
    reason: str
    elapsed: float


class Deliverer:
    def __init__(self, store: Store, delivery: DeliveryConfig,
                 channels: Mapping[str, ChannelConfig]) -> None:
        self._store = store
        self._in_flight: set[int] = set()
        self.configure(delivery, channels)

    def configure(self, delivery: DeliveryConfig, channels: Mapping[str, ChannelConfig]) -> None:
        """Take a reloaded configuration; entries being sent stay tracked."""
        self._delivery = delivery
        self._channels = channels

    async def deliver_due(self, now: datetime) -> list[DeliveryResult]:
        """Send every entry due by `now`, concurrently; one failing never holds up the others.

        Entries still being sent by an earlier call are skipped, so overlapping calls (a
        tick while a slow receiver times out) never send an entry twice.
        """
        due = [entry for entry in self._store.outbox(due_by=now)
               if _entry_id(entry) not in self._in_flight]
        ids = {_entry_id(entry) for entry in due}
        self._in_flight |= ids
        try:
            return list(await asyncio.gather(*(self._deliver(entry, now) for entry in due)))
        finally:
            self._in_flight -= ids

    async def _deliver(self, entry: OutboxEntry, now: datetime) -> DeliveryResult:
        result = await send(entry, self._delivery.timeout)
        if result.ok:
            self._store.delivered(_entry_id(entry))
            logger.info("delivered notification %d to %s %s in %.0f ms", result.entry_id,
                        result.channel, result.url, result.elapsed * 1000)
            return result
        fallback = self._fallback(entry, result, now)
        retry_at = self._retry_at(entry, now)
        self._store.retry_later(_entry_id(entry), retry_at, result.reason, fallback)
        logger.warning("notification %d to %s %s failed (attempt %d): %s; retrying at %s",
                       result.entry_id, result.channel, result.url, entry.attempts + 1,
                       result.reason, retry_at.isoformat(timespec="seconds"))
        if fallback:
            logger.warning("notification %d undeliverable since %s: also sent to the "
                           "fallback channel %s", result.entry_id,
                           entry.created_at.isoformat(timespec="seconds"), fallback[0].channel)
        return result

    def _retry_at(self, entry: OutboxEntry, now: datetime) -> datetime:
        """After the backoff, but not after a fallback deadline still ahead, so that the
        fallback is not late by up to `retry_max`."""
        retry_at = now + backoff(entry.attempts, self._delivery)
        deadline = entry.created_at + self._delivery.fallback_after
        if self._fallback_channel(entry) and now < deadline:
            return min(retry_at, deadline)
        return retry_at

    def _fallback_channel(self, entry: OutboxEntry) -> str | None:
        """Where the entry goes if undeliverable: none once escalated, or if it is there."""
        name = self._delivery.fallback
        return None if name is None or entry.escalated or entry.channel == name else name

    def _fallback(self, entry: OutboxEntry, failed: DeliveryResult,
                  now: datetime) -> list[OutboxEntry]:
        """The fallback channel's entries for a notification undeliverable for too long,
        with a first line saying where it could not go; none before then, and none twice
        (the fallback's own entries are escalated from the start)."""
        name, undeliverable = self._fallback_channel(entry), now - entry.created_at
        if name is None or undeliverable < self._delivery.fallback_after:
            return []
        note = (f"Not delivered to channel {entry.channel} ({failed.url}) for "
                f"{format_duration(undeliverable)}: {failed.reason}")
        body = f"<p>{html.escape(note)}</p>\n{entry.body}" if entry.body_format == "html" \
            else f"{note}\n\n{entry.body}"
        return [OutboxEntry(channel=name, url=url.get_secret_value(),
                            title=f"[UNDELIVERED] {entry.title}", body=body,
                            body_format=entry.body_format, notify_type=entry.notify_type,
                            created_at=now, next_attempt_at=now, escalated=True)
                for url in self._channels[name].urls]


def backoff(attempts: int, delivery: DeliveryConfig) -> timedelta:
    """`retry_initial` after the first failure, doubling after each one, up to `retry_max`."""
    delay = delivery.retry_initial
    for _ in range(attempts):
        if delay >= delivery.retry_max:
            break  # doubling further would only overflow
        delay *= 2
    return min(delay, delivery.retry_max)


async def notify_test(urls: Sequence[str], title: str, body: str, fmt: Format, *,
                      channel: str = "", timeout: timedelta = _DEFAULT_TIMEOUT,
                      ) -> list[DeliveryResult]:
    """Send one message straight to each URL (not through the outbox) and report each."""
    now = datetime.now(UTC)
    entries = [OutboxEntry(channel=channel, url=url, title=title, body=body, body_format=fmt,
                           notify_type="info", created_at=now, next_attempt_at=now)
               for url in urls]
    return list(await asyncio.gather(*(send(entry, timeout) for entry in entries)))


async def send(entry: OutboxEntry, timeout: timedelta) -> DeliveryResult:
    """Deliver one entry through Apprise; every outcome, even an exception, is a result."""
    started = time.perf_counter()
    server = apprise.Apprise.instantiate(entry.url)
    if server is None:
        return _result(entry, _mask(entry.url), started, "Apprise cannot parse this URL "
                       "(unknown scheme, or a missing or invalid part)")
    server.request_rate_per_sec = 0  # no 5.5 s sleep between targets of one send
    masked = _privacy_url(server)
    notifier = apprise.Apprise()
    notifier.add(server)
    _let_apprise_report_failures()
    try:
        outcome = await notifier.async_notify(
            body=entry.body, title=entry.title, notify_type=entry.notify_type,
            body_format=entry.body_format, timeout=timeout.total_seconds())
    except Exception as exc:  # a plugin's bug must not lose the other deliveries
        reason = f"{type(exc).__name__}: {exc}".replace(entry.url, masked)
        return _result(entry, masked, started, reason)
    if outcome:
        return _result(entry, masked, started)
    reasons = "; ".join(log.message for log in outcome.logs())
    return _result(entry, masked, started, reasons or f"Apprise reported {outcome.status.name}")


def _result(entry: OutboxEntry, url: str, started: float, failure: str | None = None,
            ) -> DeliveryResult:
    return DeliveryResult(entry.id, entry.channel, url, ok=failure is None,
                          reason=failure or "delivered", elapsed=time.perf_counter() - started)


def _let_apprise_report_failures() -> None:
    """Apprise captures a service's log lines only at levels its logger lets through."""
    apprise_logger = logging.getLogger("apprise")
    if apprise_logger.getEffectiveLevel() > logging.WARNING:
        apprise_logger.setLevel(logging.WARNING)


def _privacy_url(server: Any) -> str:
    """Apprise's masked URL without its query, where Apprise leaves secrets such as
    `json://` headers (`?+X-Token=…`) in the clear."""
    url: str = server.url(privacy=True)
    return url.partition("?")[0]


def _mask(url: str) -> str:
    """Only the scheme of a URL Apprise cannot parse: any other part may be a secret."""
    scheme, separator, _ = url.partition("://")
    return f"{scheme}://***" if separator else "***"


def _entry_id(entry: OutboxEntry) -> int:
    assert entry.id is not None, "outbox entries read from the store have ids"
    return entry.id
