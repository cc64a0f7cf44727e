"""Each source end to end, in process: the simulated cluster over real HTTP, the Watchdog's
own poll → evaluate → notify path, and a local json:// receiver. Polls are driven one by one,
so each test says exactly which round sees what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e import Harness, Receiver, write_config
from watchdog.simulator import SimulatedCluster

RULES = """\
rules:
  - alert: SettingChanged
    source: events
    each: event
    when: event.event_type == 'set_cluster_setting'
    summary: "{{ event.info.SettingName }} was changed"
  - alert: Restarted
    source: nodes
    each: node
    when: previous is not none and node.started_at != previous.started_at
    summary: "node {{ node.node_id }} restarted"
  - alert: Unreachable
    source: health
    each: item
    when: not item.ok
    summary: "node {{ item.node_id }} at {{ item.url }} does not answer"
  - alert: Hot
    source: hot_ranges
    each: range
    when: range.cpu_time_per_second > 0.5e9
    summary: >-
      range {{ range.range_id }} on {{ range.table }}
      burns {{ (range.cpu_time_per_second / 1e9) | round(2) }} CPU
"""


@pytest.fixture
def config_path(tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> Path:
    (tmp_path / "rules.yaml").write_text(RULES)
    return write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url,
                        rules=[str(tmp_path / "rules.yaml")])


@pytest.fixture
async def harness(config_path: Path) -> AsyncIterator[Harness]:
    running = Harness(config_path)
    yield running
    await running.close()


async def test_events_notify_once_and_history_is_not_replayed(
        harness: Harness, cluster: SimulatedCluster, receiver: Receiver) -> None:
    cluster.add_event("set_cluster_setting", {"SettingName": "kv.rangefeed.enabled"})
    await harness.round("events")
    assert receiver.payloads == [], "an event from before the first start was replayed"
    cluster.add_event("set_cluster_setting", {"SettingName": "server.time_until_store_dead"})
    await harness.round("events")
    await harness.round("events")
    assert receiver.titles() == ["[FIRING:1] SettingChanged"]
    assert "server.time_until_store_dead was changed" in receiver.payloads[0]["message"]
    await harness.restart()
    cluster.add_event("set_cluster_setting", {"SettingName": "sql.defaults.distsql"})
    await harness.round("events")
    assert len(receiver.payloads) == 2, "the event during the restart was lost or one replayed"
    assert "sql.defaults.distsql was changed" in receiver.payloads[1]["message"]


async def test_an_event_never_resolves(
        harness: Harness, cluster: SimulatedCluster, receiver: Receiver) -> None:
    await harness.round("events")
    cluster.add_event("set_cluster_setting", {"SettingName": "a"})
    for _ in range(3):
        await harness.round("events")
    assert receiver.titles("[RESOLVED") == []


async def test_previous_lets_a_rule_see_a_restart(
        harness: Harness, cluster: SimulatedCluster, receiver: Receiver) -> None:
    await harness.round("nodes")
    await harness.round("nodes")
    assert receiver.payloads == []
    cluster.restart(3)
    await harness.round("nodes")
    assert receiver.titles() == ["[FIRING:1] Restarted"]
    assert "node 3 restarted" in receiver.payloads[0]["message"]


async def test_health_names_the_unreachable_node(
        harness: Harness, cluster: SimulatedCluster, receiver: Receiver) -> None:
    await harness.round("health")
    cluster.cut_off(2)
    await harness.round("health")
    assert receiver.titles() == ["[FIRING:1] Unreachable"]
    assert f"node 2 at {cluster.url(2)} does not answer" in receiver.payloads[0]["message"]


async def test_hot_ranges_page_and_a_dead_node_is_not_a_failed_round(
        harness: Harness, cluster: SimulatedCluster, receiver: Receiver) -> None:
    cluster.add_hot_range(4242, 1, cpu_time_per_second=0.9e9)
    cluster.kill(3)
    cluster.advance(2)
    [done] = await harness.round("hot_ranges")
    assert done.poll.ok and "failed to dial into node 3" in done.poll.unreported[3]
    assert receiver.titles() == ["[FIRING:1] Hot"]
    assert "range 4242 on users burns 0.9 CPU" in receiver.payloads[0]["message"]
