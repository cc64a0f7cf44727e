"""`crdb-watchdog demo`: a scripted incident on a simulated cluster, printed to the terminal.

A 3-node simulated cluster, the watchdog with the built-in rule pack, and a terminal
channel. Node 2 is killed; when its liveness expires the page appears; the node is revived
and the resolution follows. Progress is read from the real pipeline (alert states, the
notification log, the outbox), so the demo fails loudly if the watchdog does.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from watchdog.alerts import State
from watchdog.config import ChannelConfig, ClusterConfig, Config, Intervals, RouteConfig
from watchdog.rules import load_rules
from watchdog.service import Watchdog
from watchdog.simulator import SimConfig, SimulatedCluster
from watchdog.store import Store

VICTIM = 2
STEP_TIMEOUT = 60.0


def demo_config(urls: list[str], password: str, state: Path) -> Config:
    seconds = timedelta(seconds=5)
    cluster = ClusterConfig(name="demo", urls=urls, password=SecretStr(password),
                            intervals=Intervals(health=seconds, nodes=seconds))
    route = RouteConfig(channels=["terminal"], group_wait=timedelta(0),
                        group_interval=timedelta(seconds=10), repeat_interval=timedelta(hours=1))
    terminal = ChannelConfig(urls=[SecretStr("term://")])
    return Config(clusters=[cluster], channels={"terminal": terminal}, routes=[route],
                  state=state)


def say(started: float, text: str) -> None:
    print(f"\n[demo +{time.monotonic() - started:4.1f}s] {text}", flush=True)


async def run_demo(*, keep_running: bool = False) -> int:
    started = time.monotonic()
    sim = SimConfig(nodes=3)
    with SimulatedCluster(sim) as cluster, \
            tempfile.TemporaryDirectory(prefix="crdb-watchdog-demo-") as tmp:
        config = demo_config(cluster.urls, sim.password, Path(tmp) / "state.db")
        store = Store(config.state)
        watchdog = Watchdog(config, load_rules(None), store)
        stop = asyncio.Event()
        running = asyncio.create_task(watchdog.run(stop))
        say(started, f"simulated cluster of 3 nodes at {', '.join(cluster.urls)}; "
                     "the watchdog polls /api/v2/nodes/ every 5 s with the built-in rule pack")
        try:
            await asyncio.sleep(3)
            say(started, f"killing node {VICTIM}: its liveness record expires after the 9 s TTL")
            cluster.kill(VICTIM)
            killed = time.monotonic()
            fingerprint = await _wait_for(watchdog, store, State.FIRING)
            say(started, f"paged {time.monotonic() - killed:.1f} s after the crash; "
                         f"reviving node {VICTIM}")
            cluster.revive(VICTIM)
            await _wait_for(watchdog, store, State.RESOLVED, fingerprint)
            say(started, "resolution delivered; the incident is over")
            if keep_running:
                say(started, "still watching (--keep-running); Ctrl-C to stop")
                await asyncio.Event().wait()
        except TimeoutError as exc:
            say(started, f"demo failed: {exc}")
            return 1
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            store.close()
    return 0


async def _wait_for(watchdog: Watchdog, store: Store, state: State,
                    fingerprint: str | None = None) -> str:
    """Wait until NodeLivenessLost of the victim is in `state` and that was delivered."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        for alert in watchdog.tracker.alerts():
            if alert.name != "NodeLivenessLost" or alert.labels.get("node_id") != str(VICTIM):
                continue
            if fingerprint is not None and alert.fingerprint != fingerprint:
                continue
            firing, resolved = store.notified()
            told = firing if state is State.FIRING else resolved
            if alert.state is state and alert.fingerprint in told and not store.outbox():
                return alert.fingerprint
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no {state.value} notification for node {VICTIM} "
                       f"within {STEP_TIMEOUT:.0f} s")
