"""The service in-process: reloads that keep what did not change, and the dead man's switch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.e2e import Receiver
from tests.service_helpers import LIVENESS_RULE, HeartbeatReceiver
from watchdog.alerts import State
from watchdog.config import (
    ChannelConfig,
    ClusterConfig,
    Config,
    HeartbeatConfig,
    Intervals,
    RouteConfig,
)
from watchdog.rules import RuleSet, load_rules
from watchdog.service import Watchdog
from watchdog.simulator import SimConfig, SimulatedCluster
from watchdog.store import Store

FAST = timedelta(milliseconds=100)


@pytest.fixture
def sim() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(SimConfig(nodes=3, liveness_ttl=0.5)) as cluster:
        yield cluster


def make_config(tmp_path: Path, sim: SimulatedCluster, receiver: Receiver,
                **changes: object) -> Config:
    cluster = ClusterConfig(name="sim", urls=sim.urls, password=SecretStr("secret"),
                            intervals=Intervals(nodes=FAST, health=FAST))
    config = Config(clusters=[cluster],
                    channels={"hook": ChannelConfig(urls=[SecretStr(receiver.url)])},
                    routes=[RouteConfig(channels=["hook"], group_interval=FAST)],
                    state=tmp_path / "state.db")
    return config.model_copy(update=changes)


def liveness_rule(tmp_path: Path) -> RuleSet:
    path = tmp_path / "liveness.yaml"
    path.write_text(LIVENESS_RULE)
    return load_rules([str(path)])


@pytest.fixture
async def running(tmp_path: Path, sim: SimulatedCluster,
                  receiver: Receiver) -> AsyncIterator[Watchdog]:
    store = Store(tmp_path / "state.db")
    watchdog = Watchdog(make_config(tmp_path, sim, receiver), liveness_rule(tmp_path), store)
    stop = asyncio.Event()
    task = asyncio.create_task(watchdog.run(stop))
    yield watchdog
    stop.set()
    await task
    store.close()


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def firing(watchdog: Watchdog) -> list[str]:
    return [a.name for a in watchdog.tracker.alerts() if a.state is State.FIRING]


async def test_reload_keeps_unchanged_clusters_and_alert_state(
        running: Watchdog, tmp_path: Path, sim: SimulatedCluster, receiver: Receiver) -> None:
    sim.kill(2)
    await until(lambda: receiver.titles("[FIRING"))
    watch, logins = running.clusters["sim"], sim.counters()["logins"]
    new_route = RouteConfig(channels=["hook"], group_interval=FAST, repeat_interval=FAST * 600)
    running.reconfigure(make_config(tmp_path, sim, receiver, routes=[new_route]),
                        liveness_rule(tmp_path))
    assert running.clusters["sim"].evaluator.previous, "the last snapshot goes on"
    rounds = running.progress.rounds
    await until(lambda: running.progress.rounds > rounds + 5)
    assert running.clusters["sim"] is watch, "an unchanged cluster keeps its client"
    assert sim.counters()["logins"] == logins, "and its session"
    assert firing(running) == ["NodeLivenessLost"]
    assert receiver.titles() == ["[FIRING:1] NodeLivenessLost"], "not paged again"


async def test_a_removed_rule_resolves_its_alerts_and_a_changed_cluster_reconnects(
        running: Watchdog, tmp_path: Path, sim: SimulatedCluster, receiver: Receiver) -> None:
    sim.kill(2)
    await until(lambda: firing(running) == ["NodeLivenessLost"])
    old = running.clusters["sim"]
    remaining = RuleSet([r for r in running.rules.rules if r.name != "NodeLivenessLost"])
    moved = make_config(tmp_path, sim, receiver).clusters[0].model_copy(
        update={"urls": sim.urls[::-1]})
    running.reconfigure(make_config(tmp_path, sim, receiver, clusters=[moved]), remaining)
    assert firing(running) == []
    await until(lambda: receiver.titles("[RESOLVED"))
    assert running.clusters["sim"] is not old
    await until(lambda: old.client._http.is_closed)
    rounds = running.clusters["sim"].rounds
    await until(lambda: running.clusters["sim"].rounds > rounds + 2)


async def test_heartbeat_after_healthy_rounds_at_most_once_per_interval(
        tmp_path: Path, sim: SimulatedCluster, receiver: Receiver) -> None:
    ping = HeartbeatReceiver()
    heartbeat = HeartbeatConfig(url=SecretStr(ping.url), interval=timedelta(milliseconds=500))
    store = Store(tmp_path / "state.db")
    watchdog = Watchdog(make_config(tmp_path, sim, receiver, heartbeat=heartbeat),
                        liveness_rule(tmp_path), store)
    stop = asyncio.Event()
    task = asyncio.create_task(watchdog.run(stop))
    try:
        await until(lambda: ping.hits)
        await asyncio.sleep(1.6)
        assert 3 <= len(ping.hits) <= 5, "one GET per 500 ms with rounds every 100 ms"
        for node_id in (1, 2, 3):
            sim.cut_off(node_id)
        await until(lambda: watchdog.clusters["sim"].poll_errors)
        quiet = len(ping.hits)
        await asyncio.sleep(1.2)
        assert len(ping.hits) <= quiet + 1  # at most one already on its way
    finally:
        stop.set()
        await task
        store.close()
        ping.close()
    assert watchdog.metrics.heartbeats.labels("ok")._value.get() >= 3


async def test_stop_dispatches_and_delivers_what_the_last_polls_found(
        tmp_path: Path, sim: SimulatedCluster, receiver: Receiver) -> None:
    """Asked to stop before the notifier ever ran: the stop's own pass sends the page."""
    sim.kill(2)
    sim.advance(1.0)  # past the liveness TTL
    store = Store(tmp_path / "state.db")
    watchdog = Watchdog(make_config(tmp_path, sim, receiver), liveness_rule(tmp_path), store)
    await watchdog.poll("sim", "nodes")
    assert firing(watchdog) == ["NodeLivenessLost"] and receiver.payloads == []
    stop = asyncio.Event()
    stop.set()
    await watchdog.run(stop)
    store.close()
    assert receiver.titles() == ["[FIRING:1] NodeLivenessLost"]
