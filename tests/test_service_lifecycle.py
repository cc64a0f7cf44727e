"""`crdb-watchdog run` as systemd runs it: a real $NOTIFY_SOCKET, WATCHDOG_USEC, SIGHUP and
SIGTERM, the status server scraped over HTTP. Real processes against simulated clusters."""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e import Receiver, cluster_block, wait_until
from tests.service_helpers import (
    LIVENESS_RULE,
    NotifySocket,
    http_get,
    running_service,
    write_service_config,
)
from watchdog.notify.silences import new_silence, parse_matcher
from watchdog.simulator import SimConfig, SimulatedCluster
from watchdog.store import Store

PASSWORD = "pw-5f1e9c2b-never-logged"
KEEPALIVE = 0.2  # WATCHDOG_USEC=400000: systemd asks for a keep-alive every 0.2 s


@pytest.fixture
def cluster() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(SimConfig(nodes=3, liveness_ttl=1.0, password=PASSWORD)) as sim:
        yield sim


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def systemd_env(notify: NotifySocket, keepalive: float = KEEPALIVE) -> dict[str, str]:
    return {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": str(int(keepalive * 2e6))}


def test_ready_keepalives_metrics_and_a_clean_stop(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver,
        notify: NotifySocket) -> None:
    config = write_service_config(
        tmp_path / "watchdog.yaml", [cluster_block("sim", cluster.urls, password=PASSWORD)],
        receiver.url)
    keepalive = 0.5  # WATCHDOG_USEC=1000000
    with running_service(config, systemd_env(notify, keepalive),
                         ("--log-format", "json")) as service:
        wait_until(lambda: notify.times("READY"), timeout=15)
        wait_until(lambda: len(notify.times("WATCHDOG")) >= 6)
        pings = notify.times("WATCHDOG")
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert keepalive * 0.9 < (pings[-1] - pings[0]) / len(gaps) < keepalive * 1.2, gaps
        assert max(gaps) < 2 * keepalive, gaps  # systemd's limit: WATCHDOG_USEC
        assert "firing" in notify.statuses()[-1]

        cluster.kill(2)
        wait_until(lambda: receiver.titles("[FIRING"))
        base = service.status_url()
        status, headers, body = http_get(base + "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        metrics = body.decode()
        for line in ('crdb_watchdog_alerts{cluster="sim",state="firing"} 1.0',
                     'crdb_watchdog_notifications_total{channel="hook",outcome="sent"} 1.0',
                     "crdb_watchdog_outbox_oldest_age_seconds 0.0"):
            assert line in metrics
        for name in ('crdb_watchdog_poll_duration_seconds_count{cluster="sim",source="nodes"}',
                     'crdb_watchdog_rounds_total{cluster="sim",source="nodes"}',
                     'crdb_watchdog_evaluation_duration_seconds_bucket{cluster="sim"',
                     "process_resident_memory_bytes"):
            assert name in metrics
        status, _, body = http_get(base + "/api/alerts")
        assert status == 200
        assert [a["alertname"] for a in json.loads(body)] == ["NodeLivenessLost"]
        status, _, body = http_get(base + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"

        started = time.monotonic()
        assert service.terminate(timeout=10) == 0
        assert time.monotonic() - started < 10
    assert notify.sequence() == ["READY", "STOPPING"]
    output = service.output()
    assert PASSWORD not in output and "Traceback" not in output
    assert all(json.loads(line)["level"] for line in output.splitlines())


def test_a_locked_state_store_is_not_a_wedge(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver,
        notify: NotifySocket) -> None:
    """Another process holds the state store's write lock (an operator's `sqlite3 state.db`
    left in a transaction, say). A restart would not help, so this is no wedge: rounds go on
    with the state held in memory, keep-alives go on, and STATUS= says a restart would lose
    state. When the lock goes, the state is written back. (A wedge, rounds that cannot
    complete, is tests/test_service_stall.py.)"""
    config = write_service_config(
        tmp_path / "watchdog.yaml",
        [cluster_block("sim", cluster.urls[:1], timeout="200ms", password=PASSWORD)],
        receiver.url)
    with running_service(config, systemd_env(notify)) as service:
        wait_until(lambda: len(notify.times("WATCHDOG")) >= 3, timeout=15)
        lock = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            wait_until(lambda: any("STATE IN MEMORY ONLY" in s for s in notify.statuses()))
            locked = time.monotonic()
            wait_until(lambda: len(notify.times("WATCHDOG", since=locked)) >= 5, timeout=5)
            assert not any("STALLED" in status for status in notify.statuses())
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        wait_until(lambda: "the state store is writable again" in service.output())
        assert service.running
    assert "Traceback" not in service.output()


def test_reload_refuses_a_broken_rule_file_and_keeps_paging(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver,
        notify: NotifySocket) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "liveness.yaml").write_text(LIVENESS_RULE)
    config = write_service_config(
        tmp_path / "watchdog.yaml", [cluster_block("sim", cluster.urls, password=PASSWORD)],
        receiver.url, rules=[str(rules / "*.yaml")])
    with running_service(config, systemd_env(notify)) as service:
        wait_until(lambda: notify.times("READY"), timeout=15)
        (rules / "liveness.yaml").write_text(
            "rules:\n  - alert: Broken\n    source: nodes\n    when: node.liveness ==\n"
            "    summary: x\n")
        service.signal(signal.SIGHUP)
        wait_until(lambda: notify.sequence() == ["READY", "RELOADING", "READY"])
        wait_until(lambda: "reload refused" in service.output())
        assert "liveness.yaml:4" in service.output()

        cluster.kill(2)
        wait_until(lambda: receiver.titles("[FIRING"))
        assert receiver.titles() == ["[FIRING:1] NodeLivenessLost"]
        metrics = http_get(service.status_url() + "/metrics")[2].decode()
        assert "crdb_watchdog_config_last_reload_successful 0.0" in metrics

        (rules / "liveness.yaml").write_text(LIVENESS_RULE)
        service.signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in service.output())
        time.sleep(1.5)  # several rounds after the reload: the firing alert is not paged again
        assert receiver.titles() == ["[FIRING:1] NodeLivenessLost"]
        cluster.revive(2)
        wait_until(lambda: receiver.titles("[RESOLVED"))
        assert service.terminate() == 0
    assert "Traceback" not in service.output()


def test_status_command_reads_the_store_while_the_service_runs(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver,
        notify: NotifySocket) -> None:
    config = write_service_config(
        tmp_path / "watchdog.yaml", [cluster_block("sim", cluster.urls, password=PASSWORD)],
        receiver.url)
    with running_service(config, systemd_env(notify)) as service:
        cluster.kill(3)
        wait_until(lambda: receiver.titles("[FIRING"))
        with contextlib.closing(Store(tmp_path / "state.db")) as store:
            now = datetime.now(UTC)
            store.add_silence(new_silence([parse_matcher("alertname=NodeDead")],
                                          timedelta(hours=2), "planned work", "ops", now), now)
        api = json.loads(http_get(service.status_url() + "/api/silences")[2])
        shown = subprocess.run([sys.executable, "-m", "watchdog", "status", "-c", str(config)],
                               capture_output=True, text=True, timeout=30, check=True).stdout
        report = json.loads(subprocess.run(
            [sys.executable, "-m", "watchdog", "status", "-c", str(config), "--json"],
            capture_output=True, text=True, timeout=30, check=True).stdout)
    assert "FIRING   critical sim NodeLivenessLost: Node 3" in shown
    assert "sim nodes" in shown and "s ago  ok" in shown
    assert [a["alertname"] for a in report["alerts"] if a["state"] == "firing"] == [
        "NodeLivenessLost"]
    assert "nodes" in {p["source"] for p in report["polls"]}
    assert [s["matchers"] for s in report["silences"]] == [["alertname=NodeDead"]]
    assert "alertname=NodeDead" in shown and "by ops: planned work" in shown
    assert api == report["silences"]
