"""Benchmark time to page end to end: a node dies, a page reaches a webhook receiver.

    python -m bench.page [--incidents 4] [--write]

Each setup is a real `crdb-watchdog run` watching its own simulated 3-node cluster with
CockroachDB's 9 s liveness TTL, in real time (nothing advanced), paging a local receiver
behind `json://`. An incident kills a node at a random moment, times kill → page, then revives
the node and waits for the resolution. The setups run side by side.

The floor. The cluster reports the node UNAVAILABLE `TTL` after it dies; the first nodes poll
after that sees it, `w` later, where `w` (the poll phase) is anywhere in [0, P) for polls every
P seconds; a rule with `for` fires at the first poll at least `for` after that one, i.e.
ceil(for / P) polls later. So

    time to page = TTL + w + ceil(for / P) · P + dispatch,   w ∈ [0, P)

between TTL + ceil(for / P) · P (the floor, w = 0) and P more. Dispatch is milliseconds.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.report import machine, markdown_table, publish
from tests.e2e import Receiver
from watchdog.simulator import SimConfig, SimulatedCluster

TTL = 9.0
PAGE = "[FIRING:1] NodeLivenessLost"
RESOLVED = "[RESOLVED:1] NodeLivenessLost"


@dataclass(frozen=True)
class Setup:
    name: str
    nodes_interval: float
    rule_for: float | None = None
    """A rule file of NodeLivenessLost with this `for`; None: the built-in pack (`for: 0s`)."""

    @property
    def floor(self) -> float:
        polls = math.ceil((self.rule_for or 0.0) / self.nodes_interval)
        return TTL + polls * self.nodes_interval

    @property
    def ceiling(self) -> float:
        return self.floor + self.nodes_interval


SETUPS = (
    Setup("rule with `for: 10s`, nodes polled every 5 s", 5.0, rule_for=10.0),
    Setup("built-in pack (`for: 0s`), nodes polled every 5 s", 5.0),
    Setup("built-in pack, default intervals (nodes every 10 s)", 10.0),
)
RULE = """\
rules:
  - alert: NodeLivenessLost
    source: nodes
    each: node
    when: node.liveness in ('UNAVAILABLE', 'DEAD')
    for: {seconds:g}s
    severity: critical
    summary: "Node {{{{ node.node_id }}}} is {{{{ node.liveness }}}}"
"""


def write_config(folder: Path, setup: Setup, urls: list[str], receiver_url: str) -> Path:
    rules = ""
    if setup.rule_for is not None:
        (folder / "liveness.yaml").write_text(RULE.format(seconds=setup.rule_for))
        rules = f"rules: [{folder / 'liveness.yaml'}]\n"
    path = folder / "watchdog.yaml"
    path.write_text(f"""\
clusters:
  - name: bench
    urls: {urls}
    password: secret
    intervals: {{nodes: {setup.nodes_interval:g}s}}
{rules}channels:
  hook: {{urls: ["{receiver_url}"]}}
routes:
  - channels: [hook]
    group_interval: 1s
flapping: null  # incidents in a row on the same nodes are the benchmark, not flapping
state: {folder / "state.db"}
http: {{listen: "127.0.0.1:0"}}
""")
    return path


def measure(setup: Setup, incidents: int) -> list[float]:
    """Seconds from each kill to the page at the receiver."""
    receiver = Receiver()
    with SimulatedCluster(SimConfig(nodes=3, liveness_ttl=TTL)) as sim, \
            tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), setup, sim.urls, receiver.url)
        process = subprocess.Popen([sys.executable, "-m", "watchdog", "run", "-c", str(config)],
                                   stderr=subprocess.DEVNULL)
        try:
            _wait(lambda: sim.counters()["requests"].get("nodes/", 0) >= 2)
            seconds = [_incident(sim, receiver, victim=2 + n % 2, interval=setup.nodes_interval)
                       for n in range(incidents)]
        finally:
            process.terminate()
            process.wait(timeout=15)
    receiver.close()
    return seconds


def _incident(sim: SimulatedCluster, receiver: Receiver, victim: int, interval: float) -> float:
    time.sleep(random.uniform(0, interval))  # a random poll phase
    pages = len(receiver.titles(PAGE))
    killed = time.monotonic()
    sim.kill(victim)
    _wait(lambda: len(receiver.titles(PAGE)) > pages)
    paged = [at for at, p in zip(receiver.received_at, receiver.payloads, strict=True)
             if p["title"] == PAGE][pages]
    resolutions = len(receiver.titles(RESOLVED))
    sim.revive(victim)
    _wait(lambda: len(receiver.titles(RESOLVED)) > resolutions)
    return paged - killed


def _wait(condition: Callable[[], object], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark's cluster or receiver did not get there")
        time.sleep(0.01)


def run(incidents: int) -> dict[Setup, list[float]]:
    """Every setup, side by side: kill → page in seconds."""
    with ThreadPoolExecutor(len(SETUPS)) as pool:
        return dict(zip(SETUPS, pool.map(lambda s: measure(s, incidents), SETUPS), strict=True))


def rows(results: dict[Setup, list[float]]) -> list[tuple[str, str, str]]:
    """(measure, result, floor and target) per setup."""
    return [(f"kill → page, {setup.name}",
             f"median {statistics.median(times):.1f} s ({min(times):.1f} to {max(times):.1f}, "
             f"{len(times)} incidents)",
             f"floor {setup.floor:g} s, up to {setup.ceiling:g} s by poll phase"
             + ("; < 20 s (DESIGN)" if setup.nodes_interval == 10.0 else ""))
            for setup, times in results.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=4)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    intro = (f"`python -m bench.page` on {machine()}: a real `crdb-watchdog run` per setup, a "
             f"3-node simulated cluster with a {TTL:g} s liveness TTL in real time, a node "
             "killed at a random moment. Floor: TTL + ceil(for / P) · P, plus the poll phase "
             "w ∈ [0, P) for nodes polls every P s.")
    publish("Time to page", intro,
            markdown_table(("measure", "result", "floor, target"), rows(run(args.incidents))),
            write=args.write)


if __name__ == "__main__":
    main()
