"""The wall clock stepped an hour forwards or back under the running service: polling goes
on, nothing fires or resolves falsely, and a node that dies pages once.

A test cannot step the machine's clock without stepping it for everyone else, so the step is
made where the service reads the wall clock as dates: APScheduler, which schedules the polls
(stepped back an hour, it would wait an hour for the next one), and the service's check for
such steps. SteadyClock, which times `for` and the notification timers, is stepped in
tests/test_clock.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import apscheduler.executors.base
import apscheduler.schedulers.base
import pytest

import watchdog.service
from tests.e2e import Receiver, write_config
from watchdog.cli import load_all
from watchdog.service import Watchdog
from watchdog.simulator import SimulatedCluster
from watchdog.store import Store

QUIET = 1.5  # seconds of rounds (every 300 ms) in which nothing more may be sent


class SteppedDatetime(datetime):
    step = timedelta(0)

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> SteppedDatetime:
        return super().now(tz) + cls.step  # type: ignore[return-value]


@pytest.fixture
def stepped_clock(monkeypatch: pytest.MonkeyPatch) -> type[SteppedDatetime]:
    for module in (apscheduler.schedulers.base, apscheduler.executors.base, watchdog.service):
        monkeypatch.setattr(module, "datetime", SteppedDatetime)
    return SteppedDatetime


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("hours", [-1, 1])
async def test_a_stepped_wall_clock_neither_stops_polling_nor_pages_falsely(
        hours: int, tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver,
        stepped_clock: type[SteppedDatetime], monkeypatch: pytest.MonkeyPatch) -> None:
    config, rules = load_all(write_config(tmp_path / "watchdog.yaml", cluster.urls,
                                          receiver.url))
    store = Store(config.state)
    service, stop = Watchdog(config, rules, store), asyncio.Event()
    running = asyncio.create_task(service.run(stop))

    def polls() -> int:
        return int(cluster.counters()["requests"].get("nodes/", 0))

    try:
        await until(lambda: polls() >= 2)
        monkeypatch.setattr(stepped_clock, "step", timedelta(hours=hours))
        stepped_at = polls()
        await until(lambda: polls() >= stepped_at + 3, timeout=5)
        assert receiver.payloads == []
        cluster.kill(2)
        await until(lambda: receiver.payloads)
        await asyncio.sleep(QUIET)
        assert receiver.titles() == ["[FIRING:1] NodeLivenessLost"]
    finally:
        stop.set()
        await running
        store.close()
