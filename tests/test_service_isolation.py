"""Many clusters in one process: a hanging cluster delays neither another's rounds nor its
pages, nor the stop."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import Receiver, cluster_block, wait_until
from tests.service_helpers import running_service, write_service_config
from watchdog.simulator import SimConfig, SimulatedCluster

TTL = 1.0


@pytest.fixture
def healthy() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(SimConfig(nodes=3, liveness_ttl=TTL)) as sim:
        yield sim


@pytest.fixture
def hanging() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(SimConfig(nodes=3)) as sim:
        yield sim


def nodes_polls(cluster: SimulatedCluster) -> int:
    return int(cluster.counters()["requests"].get("nodes/", 0))


def test_a_hanging_cluster_delays_neither_the_others_page_nor_the_stop(
        tmp_path: Path, healthy: SimulatedCluster, hanging: SimulatedCluster) -> None:
    receiver = Receiver()
    config = write_service_config(tmp_path / "watchdog.yaml", [
        cluster_block("good", healthy.urls),
        cluster_block("stuck", hanging.urls, timeout="5s"),  # a poll of it takes 15 s or more
    ], receiver.url)
    try:
        with running_service(config, {}) as service:
            wait_until(lambda: nodes_polls(hanging) >= 1 and nodes_polls(healthy) >= 2,
                       timeout=15)
            hanging.inject(None, "hang", seconds=30)
            time.sleep(1.0)  # the stuck cluster's polls are all waiting now

            before = nodes_polls(healthy)
            time.sleep(1.5)
            assert nodes_polls(healthy) - before >= 3, "the good cluster's rounds slowed down"

            healthy.kill(2)
            killed = time.monotonic()
            wait_until(lambda: receiver.titles("[FIRING"), timeout=10)
            latency = receiver.received_at[0] - killed
            # liveness expires after the TTL, the next nodes poll (300 ms) sees it; anything the
            # stuck cluster caused would cost at least its 5 s timeout
            assert latency < TTL + 1.5, f"page after {latency:.1f} s"
            assert receiver.titles() == ["[FIRING:1] NodeLivenessLost"]
            assert "good" in receiver.payloads[0]["message"]

            started = time.monotonic()
            assert service.terminate(timeout=10) == 0
            assert time.monotonic() - started < 10
        assert "abandoned" in service.output()
        assert "Traceback" not in service.output()
    finally:
        receiver.close()
