"""The walking skeleton end to end: real processes, real HTTP, real Apprise.

The simulated cluster serves the Cluster API on 127.0.0.1 (liveness TTL shortened to 1 s),
`crdb-watchdog run` polls it, and a local webhook receiver behind a `json://` Apprise URL
records every notification.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e import Receiver, running_watchdog, wait_until, write_config
from watchdog.simulator import SimulatedCluster

QUIET = 2.0  # seconds of polling (several rounds at 300 ms) in which nothing may be sent


def polled(cluster: SimulatedCluster, times: int) -> bool:
    return cluster.counters()["requests"].get("nodes/", 0) >= times


def test_dead_node_pages_once_survives_kill_9_and_resolves_once(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url)
    with running_watchdog(config) as watchdog:
        wait_until(lambda: polled(cluster, 2))
        cluster.kill(2)
        wait_until(lambda: receiver.titles("[FIRING"))
        time.sleep(QUIET)
        assert receiver.titles("[FIRING") == ["[FIRING:1] NodeLivenessLost"]
        assert "Node 2 " in receiver.payloads[0]["message"]
        assert receiver.payloads[0]["type"] == "failure"
        wait_until(watchdog.outbox_empty)
        watchdog.kill9()

    polls_before_restart = cluster.counters()["requests"]["nodes/"]
    with running_watchdog(config):
        wait_until(lambda: polled(cluster, polls_before_restart + 3))
        time.sleep(QUIET)
        assert len(receiver.titles("[FIRING")) == 1, "kill -9 and a restart paged again"
        cluster.revive(2)
        wait_until(lambda: receiver.titles("[RESOLVED"))
        time.sleep(QUIET)
    assert receiver.titles("[RESOLVED") == ["[RESOLVED:1] NodeLivenessLost"]
    assert receiver.payloads[-1]["type"] == "success"
    assert len(receiver.payloads) == 2


def test_resolution_that_happened_while_down_is_notified_after_restart(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url)
    with running_watchdog(config) as watchdog:
        cluster.kill(3)
        wait_until(lambda: receiver.titles("[FIRING") and watchdog.outbox_empty())
        watchdog.kill9()
    cluster.revive(3)
    with running_watchdog(config):
        wait_until(lambda: receiver.titles("[RESOLVED"))
        time.sleep(QUIET)
    assert [p["title"] for p in receiver.payloads] == ["[FIRING:1] NodeLivenessLost",
                                                        "[RESOLVED:1] NodeLivenessLost"]


def test_one_node_url_down_changes_nothing(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url)
    cluster.cut_off(1)
    with running_watchdog(config) as watchdog:
        wait_until(lambda: polled(cluster, 5))
        time.sleep(QUIET)
        assert watchdog.running
    assert receiver.payloads == []
    served = cluster.counters()["by_node"]
    assert "1" not in served or "nodes/" not in served["1"]


def test_expired_session_causes_one_login_and_no_notification(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url)
    with running_watchdog(config):
        wait_until(lambda: polled(cluster, 3))
        assert cluster.counters()["logins"] == 1
        cluster.expire_sessions()
        before = cluster.counters()["requests"]["nodes/"]
        wait_until(lambda: polled(cluster, before + 5))
    assert cluster.counters()["logins"] == 2
    assert receiver.payloads == []


def test_unreachable_cluster_at_start_does_not_stop_the_service(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    for node_id in (1, 2, 3):
        cluster.cut_off(node_id)
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url)
    with running_watchdog(config) as watchdog:
        wait_until(lambda: receiver.titles("[FIRING"))
        assert watchdog.running
        assert receiver.titles() == ["[FIRING:1] ClusterUnreachable"]
        for node_id in (1, 2, 3):
            cluster.cut_off(node_id, on=False)
        wait_until(lambda: receiver.titles("[RESOLVED"))
    assert receiver.titles("[RESOLVED") == ["[RESOLVED:1] ClusterUnreachable"]


def test_sigterm_stops_the_service_cleanly(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url)
    with running_watchdog(config) as watchdog:
        wait_until(lambda: polled(cluster, 2))
        assert watchdog.terminate(timeout=10) == 0
    assert "Traceback" not in watchdog.output()
