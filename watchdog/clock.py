"""Time that does not jump: wall-clock readings anchored once, then advanced monotonically.

Every duration the watchdog judges (`for`, `keep_firing_for`, group timers, retry backoff)
is a difference of two readings of this clock. If the system clock is stepped (NTP after a
suspend, an operator's mistake), a plain wall clock would make a pending alert fire at once
or a resolved one vanish before it was announced; this clock keeps its pace with the
monotonic clock and logs the step instead. It is re-anchored to the wall clock on each start,
so times stored in the state file stay comparable across restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)

STEP_WARNING = timedelta(seconds=2)


class SteadyClock:
    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._anchor_wall = wall()
        self._anchor_monotonic = monotonic()
        self._reported_step = timedelta(0)

    def __call__(self) -> datetime:
        elapsed = self._monotonic() - self._anchor_monotonic
        now = datetime.fromtimestamp(self._anchor_wall + elapsed, tz=UTC)
        self._notice_step(datetime.fromtimestamp(self._wall(), tz=UTC) - now)
        return now

    def _notice_step(self, step: timedelta) -> None:
        """Log a step of the system clock once (and again if it grows), not every reading."""
        if abs(step - self._reported_step) >= STEP_WARNING:
            self._reported_step = step
            log.warning("the system clock moved %+.0f s against the monotonic clock; alert "
                        "timings keep the monotonic pace until the next restart",
                        step.total_seconds())
