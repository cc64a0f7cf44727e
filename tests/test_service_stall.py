"""A wedged service stops its keep-alives, so that systemd restarts it.

A wedge is rounds that cannot complete: here every round hits a bug, injected into the
service running in this process. (What is not a wedge: a hanging cluster,
tests/test_service_isolation.py; a locked state file, tests/test_service_lifecycle.py.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import Receiver, cluster_block
from tests.service_helpers import write_service_config
from watchdog.cli import load_all
from watchdog.service import Watchdog
from watchdog.simulator import SimulatedCluster
from watchdog.store import Store


class SentToSystemd:
    """Stands in for the sd_notify Notifier: keeps what the service sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, dict[str, str]]] = []

    def send(self, **fields: str) -> bool:
        self.sent.append((time.monotonic(), fields))
        return True

    def keepalives(self, since: float = 0.0) -> int:
        return sum(1 for at, fields in self.sent if fields.get("WATCHDOG") and at >= since)

    def stalled(self) -> bool:
        return any("STALLED" in fields.get("STATUS", "") for _, fields in self.sent)


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def a_bug(*_: Any) -> None:
    raise RuntimeError("a bug in every round")


async def test_no_keepalive_while_rounds_cannot_complete(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a keep-alive every 0.2 s
    config, rules = load_all(write_service_config(
        tmp_path / "watchdog.yaml", [cluster_block("sim", cluster.urls[:1], timeout="200ms")],
        receiver.url))
    store = Store(config.state)
    watchdog, systemd, stop = Watchdog(config, rules, store), SentToSystemd(), asyncio.Event()
    running = asyncio.create_task(watchdog.run(stop, systemd))  # type: ignore[arg-type]
    try:
        await until(lambda: systemd.keepalives() >= 2)
        evaluator = watchdog.clusters["sim"].evaluator
        with monkeypatch.context() as patch:
            patch.setattr(evaluator, "on_poll", a_bug)
            await until(systemd.stalled)  # after 0.3 s interval + 2 x 0.2 s timeout + 1 s
            quiet_from = time.monotonic()
            await asyncio.sleep(1.0)
            assert systemd.keepalives(since=quiet_from) == 0
        fixed = time.monotonic()
        await until(lambda: systemd.keepalives(since=fixed) >= 1)
    finally:
        stop.set()
        await running
        store.close()
