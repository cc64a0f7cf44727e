"""The notify pipeline end to end: the simulated cluster, the real service, a local receiver.

The first test drives the service in this process, poll by poll; the others run
`crdb-watchdog run` as a child process (kill -9 included) while the CLI works on the same
state file, as an operator would.
"""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.e2e import Receiver, running_watchdog, wait_until, write_config
from watchdog.cli import main
from watchdog.config import ChannelConfig, ClusterConfig, Config, RouteConfig
from watchdog.rules import load_rules
from watchdog.service import Watchdog
from watchdog.simulator import SimConfig, SimulatedCluster
from watchdog.store import Store

QUIET = 1.5  # seconds of rounds (every 300 ms) in which nothing may be sent
ZONES = [{"region": "us-east1", "zone": "us-east1-b"}, {"region": "us-east1", "zone": "us-east1-b"},
         {"region": "us-east1", "zone": "us-east1-c"}]


async def test_a_zone_outage_is_one_page_saying_where_and_what_happened_before(
        tmp_path: Path, receiver: Receiver) -> None:
    with SimulatedCluster(SimConfig(nodes=3, localities=ZONES)) as sim:
        config = Config(
            clusters=[ClusterConfig(name="sim", urls=sim.urls,
                                    password=SecretStr(sim.config.password))],
            channels={"hook": ChannelConfig(urls=[SecretStr(receiver.url)])},
            routes=[RouteConfig(channels=["hook"], group_by=["cluster", "zone"])],
            state=tmp_path / "state.db")
        store = Store(config.state)
        watchdog = Watchdog(config, load_rules(None), store)
        try:
            await watchdog.poll("sim", "events")  # a first start: history is not replayed
            sim.restart(1)
            await watchdog.poll("sim", "events")
            sim.kill(1)
            sim.kill(2)
            sim.advance(sim.config.liveness_ttl)
            await watchdog.poll("sim", "nodes")
            await watchdog.notify_pass()
        finally:
            await watchdog.close()
            store.close()
    [page] = receiver.payloads
    assert page["title"] == "[FIRING:2] NodeLivenessLost"
    for text in ("Node 1 (127.0.0.1:", "Node 2 (127.0.0.1:", "node: 1 (127.0.0.1:",
                 "locality: region=us-east1, zone=us-east1-b",
                 f"DB Console: {sim.urls[0]}/#/node/2", "Recent events:",
                 "node 1: node_restart (down 0s)"):
        assert text in page["message"], text
    assert "labels:" not in page["message"]


def test_a_silence_added_through_the_cli_is_honoured_by_the_running_service(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url)
    with running_watchdog(config), closing(Store(tmp_path / "state.db")) as store:
        wait_until(lambda: polled(cluster, 2))
        assert main(["silence", "add", "-c", str(config), "--match", "alertname=NodeLivenessLost",
                     "--match", "node_id=2", "--duration", "1h", "--comment", "replacing"]) == 0
        silence_id = capsys.readouterr().out.split()[0]
        cluster.kill(2)
        wait_until(lambda: firing(store, "NodeLivenessLost"))
        time.sleep(QUIET)
        assert receiver.payloads == [], "a silenced alert paged"
        assert main(["silence", "expire", "-c", str(config), silence_id]) == 0
        wait_until(lambda: receiver.titles("[FIRING"))
    assert receiver.titles() == ["[FIRING:1] NodeLivenessLost"]


def test_a_page_waits_for_its_receiver_across_a_kill_9_and_arrives_once(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url)
    receiver.up = False
    with running_watchdog(config) as watchdog, closing(Store(tmp_path / "state.db")) as store:
        cluster.kill(2)
        wait_until(lambda: any(entry.attempts >= 2 for entry in store.outbox()))
        watchdog.kill9()
    receiver.up = True
    with running_watchdog(config):
        wait_until(lambda: receiver.payloads)
        time.sleep(QUIET)
    assert receiver.titles() == ["[FIRING:1] NodeLivenessLost"]


def test_a_template_broken_while_running_still_delivers_the_page(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "title.txt.j2").write_text("PAGE {{ count }}: {{ alertnames | join(', ') }}")
    body = templates / "body.txt.j2"
    body.write_text("{{ firing | length }} alerts")
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url,
                          extra=f"templates: {templates}\n")
    with running_watchdog(config) as watchdog:
        wait_until(lambda: polled(cluster, 2))
        body.write_text("{% for alert in firing %}{{ alert.summary }\n")  # a typo, live
        cluster.kill(2)
        wait_until(lambda: receiver.payloads)
    [page] = receiver.payloads
    assert page["title"] == "PAGE 1: NodeLivenessLost"
    assert page["message"].startswith("CRITICAL NodeLivenessLost: Node 2 ")
    assert f"{body}:1: TemplateSyntaxError" in watchdog.output()
    assert "(using the built-in template instead)" in watchdog.output()


def polled(cluster: SimulatedCluster, times: int) -> bool:
    return cluster.counters()["requests"].get("nodes/", 0) >= times


def firing(store: Store, alertname: str) -> bool:
    return any(alert.name == alertname and alert.state == "firing"
               for alert in store.load_alerts().values())
