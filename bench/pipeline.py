"""Benchmark the walking skeleton: dispatch latency over 20 incidents, and the RSS of `run`.

    python -m bench.pipeline [--incidents 20] [--rss-seconds 30]

Dispatch latency is measured in one process against the simulated cluster and a local
webhook receiver behind `json://`: from the moment the nodes poll that shows the dead node
returns its data to the moment the receiver has the page (and likewise for resolutions).
The simulated clock is advanced past the liveness TTL so each incident takes about a second.
Resident memory is that of a real `crdb-watchdog run` process watching one simulated cluster
at the default intervals, sampled from /proc. Figures are printed and written to
bench/RESULTS.md with --write.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from bench.report import machine, markdown_table, publish, status_mib
from tests.e2e import Receiver, write_config
from watchdog.config import ChannelConfig, ClusterConfig, Config, Intervals, RouteConfig
from watchdog.rules import load_rules
from watchdog.service import Watchdog
from watchdog.simulator import SimConfig, SimulatedCluster
from watchdog.snapshot import Node
from watchdog.store import Store

TTL = 9.0
TITLES = {"fire": "[FIRING:1] NodeLivenessLost", "resolve": "[RESOLVED:1] NodeLivenessLost"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def dispatch_latency(incidents: int) -> dict[str, list[float]]:
    receiver = Receiver()
    sim = SimulatedCluster(SimConfig(nodes=3, liveness_ttl=TTL))
    sim.start()
    tmp = tempfile.TemporaryDirectory()
    config = Config(
        clusters=[ClusterConfig(name="bench", urls=sim.urls, password=SecretStr("secret"),
                                intervals=Intervals(nodes=timedelta(milliseconds=250)))],
        channels={"hook": ChannelConfig(urls=[SecretStr(receiver.url)])},
        routes=[RouteConfig(channels=["hook"], group_wait=timedelta(0),
                            group_interval=timedelta(milliseconds=1))],
        flapping=None,  # a node killed and revived 10 times would be flapping, and quiet
        state=Path(tmp.name) / "state.db")
    watchdog = Watchdog(config, load_rules(None), Store(config.state))
    client = watchdog.clusters["bench"].client
    data_at: dict[str, float] = {}
    fetch = client.nodes

    async def timed_nodes() -> list[Node]:
        nodes = await fetch()
        down = {n.node_id for n in nodes if n.liveness != "LIVE"}
        key = "fire" if down else "resolve"
        data_at.setdefault(key, time.perf_counter())
        return nodes

    client.nodes = timed_nodes  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(watchdog.run(stop))
    latencies: dict[str, list[float]] = {"fire": [], "resolve": []}
    try:
        await asyncio.sleep(1)
        for incident in range(incidents):
            victim = 2 + incident % 2
            for key, title in TITLES.items():
                data_at.pop(key, None)
                sent = len(receiver.titles(title))
                if key == "fire":
                    sim.kill(victim)
                    sim.advance(TTL)
                else:
                    sim.revive(victim)
                arrived = await _wait(receiver, title, sent)
                latencies[key].append(arrived - data_at[key])
    finally:
        stop.set()
        await running
        sim.stop()
        receiver.close()
        tmp.cleanup()
    return latencies


async def _wait(receiver: Receiver, title: str, received: int, timeout: float = 30.0) -> float:
    """Until the receiver holds more than `received` notifications titled `title` (other
    alerts of the pack, such as NodeRestarted, come and go meanwhile); when the next came."""
    deadline = time.monotonic() + timeout
    while len(receiver.titles(title)) <= received:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {title} notification arrived")
        await asyncio.sleep(0.001)
    return [at for at, payload in zip(receiver.received_at, receiver.payloads, strict=True)
            if payload["title"] == title][received]


def run_rss(seconds: float) -> tuple[float, float]:
    """Steady-state and peak resident memory (MiB) of `crdb-watchdog run`, one cluster."""
    receiver = Receiver()
    with SimulatedCluster(SimConfig(nodes=3)) as sim, tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp) / "watchdog.yaml", sim.urls, receiver.url,
                              interval="10s")
        process = subprocess.Popen([sys.executable, "-m", "watchdog", "run", "-c", str(config)],
                                   stderr=subprocess.DEVNULL)
        samples = []
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(1)
                samples.append(status_mib(process.pid, "VmRSS"))
            peak = status_mib(process.pid, "VmHWM")
        finally:
            process.terminate()
            process.wait()
    receiver.close()
    return samples[-1], peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--rss-seconds", type=float, default=30)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    latencies = asyncio.run(dispatch_latency(args.incidents))
    rss, peak = run_rss(args.rss_seconds)
    ms = {key: [v * 1000 for v in values] for key, values in latencies.items()}
    rows = [
        ("page: poll data → receiver, median", f"{statistics.median(ms['fire']):.1f} ms",
         "< 100 ms (issue 2), < 10 ms (DESIGN)"),
        ("page: poll data → receiver, p99", f"{percentile(ms['fire'], 0.99):.1f} ms", "< 100 ms"),
        ("resolution: poll data → receiver, median",
         f"{statistics.median(ms['resolve']):.1f} ms", ""),
        ("resident memory of `run`, one cluster", f"{rss:.1f} MiB (peak {peak:.1f} MiB)",
         "< 80 MiB"),
    ]
    intro = (f"`python -m bench.pipeline` on {machine()}: {args.incidents} incidents, memory "
             f"sampled for {args.rss_seconds:.0f} s.")
    publish("Dispatch latency and memory", intro,
            markdown_table(("measure", "result", "target"), rows), write=args.write)


if __name__ == "__main__":
    main()
