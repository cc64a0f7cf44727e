"""The dead man's switch: a GET to `heartbeat.url` after healthy rounds (the healthchecks
convention), so an outside service pages someone when the watchdog itself goes quiet.

At most one call per `heartbeat.interval` and one at a time, sent in the background: a slow
heartbeat receiver never holds up a round. Failures are logged when they start and stop,
with the URL cut to its host, since the rest of such a URL is the secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from watchdog import __version__
from watchdog.config import HeartbeatConfig

log = logging.getLogger(__name__)

TIMEOUT = 10.0


class Heartbeat:
    def __init__(self, config: HeartbeatConfig,
                 on_result: Callable[[bool], None] = lambda ok: None) -> None:
        self.config = config
        self._on_result = on_result
        self._last: float | None = None
        self._task: asyncio.Task[bool] | None = None
        self._failing = False

    def beat(self) -> None:
        """Call after a healthy round; sends if a URL is set and the interval has passed."""
        if self.config.url is None or (self._task is not None and not self._task.done()):
            return
        now = time.monotonic()
        if self._last is not None and now - self._last < self.config.interval.total_seconds():
            return
        self._last = now
        self._task = asyncio.create_task(self._send(self.config.url.get_secret_value()))

    async def _send(self, url: str) -> bool:
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT, headers={
                    "User-Agent": f"crdb-watchdog/{__version__}"}) as client:
                response = await client.get(url)
            ok, reason = response.is_success, f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, reason = False, type(exc).__name__
        self._report(ok, reason, url)
        return ok

    def _report(self, ok: bool, reason: str, url: str) -> None:
        self._on_result(ok)
        if ok and self._failing:
            log.info("heartbeat to %s works again", _host(url))
        elif not ok and not self._failing:
            log.warning("heartbeat to %s failed: %s", _host(url), reason)
        self._failing = not ok

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"
