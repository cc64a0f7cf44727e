"""Fault injection: what the cluster API can do wrong, and what the watchdog must do then.

Each case drives an in-process Watchdog against the simulated cluster (real HTTP) with a
local json:// receiver. The rule under test is the built-in NodeLivenessLost: the outcome
asserted is always what reaches the receiver (nothing false fires, nothing resolves on a
failure) and what the state store records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e import Harness, Receiver, write_config
from watchdog.simulator import SimulatedCluster

FAULTS = ["status500", "garbage", "drop", "hang"]


@pytest.fixture
async def harness(tmp_path: Path, cluster: SimulatedCluster,
                  receiver: Receiver) -> AsyncIterator[Harness]:
    path = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url,
                        unreachable_after=3)
    running = Harness(path)
    yield running
    await running.close()


async def page_for_dead_node(harness: Harness, cluster: SimulatedCluster,
                             receiver: Receiver) -> None:
    cluster.kill(2)
    cluster.advance(2)
    await harness.round("nodes")
    assert receiver.titles() == ["[FIRING:1] NodeLivenessLost"]


def inject(cluster: SimulatedCluster, fault: str) -> None:
    cluster.inject(None, fault, path="nodes/", seconds=3)


@pytest.mark.parametrize("fault", FAULTS)
async def test_api_failure_neither_resolves_a_firing_alert(
        fault: str, harness: Harness, cluster: SimulatedCluster, receiver: Receiver) -> None:
    await page_for_dead_node(harness, cluster, receiver)
    cluster.revive(2)
    inject(cluster, fault)
    [done] = await harness.round("nodes")
    assert not done.poll.ok and done.poll.cluster_down
    assert receiver.titles("[RESOLVED") == []
    [record] = harness.store.polls()
    assert not record.ok and record.error


@pytest.mark.parametrize("fault", FAULTS)
async def test_api_failure_fires_nothing_false_until_the_cluster_is_unreachable(
        fault: str, harness: Harness, cluster: SimulatedCluster, receiver: Receiver) -> None:
    await harness.round("nodes")
    inject(cluster, fault)
    await harness.round("nodes", "nodes")
    assert receiver.payloads == []
    await harness.round("nodes")
    assert receiver.titles() == ["[FIRING:1] ClusterUnreachable"]
    cluster.inject(None, None)
    await harness.round("nodes")
    await harness.after_group_interval()
    assert receiver.titles("[RESOLVED") == ["[RESOLVED:1] ClusterUnreachable"]


async def test_one_node_failing_is_served_by_another(
        harness: Harness, cluster: SimulatedCluster, receiver: Receiver) -> None:
    cluster.inject(1, "status500", path="nodes/")
    [done] = await harness.round("nodes")
    assert done.poll.ok
    assert harness.watchdog.clusters["sim"].client.stats.failovers == 1
    assert receiver.payloads == []


async def test_expired_session_means_one_new_login_and_nothing_else(
        harness: Harness, cluster: SimulatedCluster, receiver: Receiver) -> None:
    await harness.round("nodes")
    cluster.expire_sessions()
    [done] = await harness.round("nodes")
    assert done.poll.ok
    assert cluster.counters()["logins"] == 2
    assert receiver.payloads == []


@pytest.mark.parametrize(("break_access", "reason"), [
    ("password changed", "login as 'root' was refused"),
    ("privilege revoked", "VIEWCLUSTERMETADATA"),
])
async def test_refused_login_or_privilege_is_a_clear_error_then_cluster_unreachable(
        break_access: str, reason: str, harness: Harness, cluster: SimulatedCluster,
        receiver: Receiver) -> None:
    await page_for_dead_node(harness, cluster, receiver)
    cluster.expire_sessions()
    if break_access == "password changed":
        cluster.set_password("rotated")
    else:
        cluster.revoke_admin()
    logins = cluster.counters()["logins"]
    for _ in range(3):
        [done] = await harness.round("nodes")
        assert reason in (done.poll.error or "")
    assert cluster.counters()["logins"] - logins <= 3, "a refused login was retried in a loop"
    await harness.after_group_interval()
    assert receiver.titles() == ["[FIRING:1] NodeLivenessLost", "[FIRING:1] ClusterUnreachable"]
    assert reason in receiver.payloads[-1]["message"]
