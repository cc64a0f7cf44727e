"""The watchdog cut off from one node: its URL refuses connections, the cluster says LIVE.

That is the built-in pack's NodeUnreachable (source health, `for: 1m`), and never
NodeLivenessLost: the node is fine, only the path to it is not. The service runs in this
process with the built-in pack, against the simulated cluster (CockroachDB's 9 s liveness
TTL), poll by poll: each round polls health and nodes 5 s after the one before (the default
health interval), and the watchdog's clock and the cluster's move on together by those 5 s,
so the minute of `for` passes without waiting a minute.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e import Harness, Receiver, write_config
from watchdog.simulator import SimConfig, SimulatedCluster
from watchdog.snapshot import Item, Node

INTERVAL = 5.0
FOR = 60.0


class SimulatedTime:
    """The watchdog's clock: the wall clock plus what the simulated cluster was advanced."""

    def __init__(self, cluster: SimulatedCluster) -> None:
        self._cluster = cluster
        self._advanced = 0.0

    def __call__(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._advanced)

    def advance(self, seconds: float) -> None:
        self._cluster.advance(seconds)
        self._advanced += seconds


async def test_cut_off_from_one_node_is_node_unreachable_after_its_for_never_liveness_lost(
        tmp_path: Path, receiver: Receiver) -> None:
    with SimulatedCluster(SimConfig(nodes=3)) as cluster:
        harness = Harness(write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url))
        time = harness.watchdog.clock = SimulatedTime(cluster)
        try:
            await harness.round("health", "nodes")
            cluster.cut_off(2)
            for _ in range(int(FOR / INTERVAL)):  # the first failed probe, then 55 s more
                _, nodes = await harness.round("health", "nodes")
                time.advance(INTERVAL)
            assert receiver.payloads == []
            assert alerts(harness) == {("NodeUnreachable", "2", "pending")}
            assert liveness(nodes.poll.items) == {1: "LIVE", 2: "LIVE", 3: "LIVE"}

            await harness.round("health", "nodes")
            assert receiver.titles() == ["[FIRING:1] NodeUnreachable"]
            assert "Node 2 (" in receiver.payloads[0]["message"]
            assert alerts(harness) == {("NodeUnreachable", "2", "firing")}

            cluster.cut_off(2, on=False)
            time.advance(INTERVAL)
            await harness.round("health", "nodes")
            assert receiver.titles("[RESOLVED") == ["[RESOLVED:1] NodeUnreachable"]
        finally:
            await harness.close()


def alerts(harness: Harness) -> set[tuple[str, str, str]]:
    return {(a.name, a.labels.get("node_id", ""), a.state.value)
            for a in harness.watchdog.tracker.alerts()}


def liveness(items: Sequence[Item]) -> dict[int, str]:
    return {item.node_id: item.liveness for item in items if isinstance(item, Node)}
