"""Benchmark one evaluation round of the built-in rule pack over 10, 100 and 1,000 nodes.

    python -m bench.evaluation [--rounds 50]

A round is what the service does after polling every source once: each rule of the pack
evaluated over its source and the alert states advanced (ClusterEvaluator.on_poll), with
the state store in memory so disk speed does not blur the figure. Snapshots are built from
the recorded 3-node response (tests/data/nodes_3_live.json), one node in a hundred
unavailable, so rules also render annotations and track alerts as in an incident; live nodes' status
records move with each round, as they do on a running cluster. Prints a
table; --write puts it in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.report import machine, markdown_table, publish
from watchdog.config import Source
from watchdog.evaluation import ClusterEvaluator
from watchdog.poller import PollResult
from watchdog.rules import load_rules
from watchdog.snapshot import HealthItem, Node, parse_hot_ranges, parse_nodes
from watchdog.store import Store
from watchdog.tracker import AlertTracker

DATA = Path(__file__).parent.parent / "tests" / "data"
SIZES = (10, 100, 1000)


def snapshot(size: int) -> dict[Source, list[Any]]:
    template = parse_nodes(json.loads((DATA / "nodes_3_live.json").read_text()))
    nodes = [dataclasses.replace(template[i % 3], node_id=i + 1,
                                 address=f"crdb-{i + 1}.example.internal:26257",
                                 liveness="UNAVAILABLE" if i % 100 == 99 else "LIVE")
             for i in range(size)]
    health = [HealthItem(f"https://crdb-{i + 1}:8080", i + 1, ok=i % 100 != 99, ready=True,
                         status=200, error=None, latency=0.002) for i in range(size)]
    hot, _ = parse_hot_ranges(json.loads((DATA / "ranges_hot.json").read_text()))
    return {"nodes": nodes, "health": health, "hot_ranges": hot}


def written_at(nodes: list[Node], at: datetime) -> list[Node]:
    """The nodes as a poll at `at` sees them: live ones wrote their status record 2 s ago."""
    return [dataclasses.replace(node, updated_at=at - timedelta(seconds=2))
            if node.liveness == "LIVE" else node for node in nodes]


def measure(size: int, rounds: int) -> tuple[float, float]:
    """Median and p99 milliseconds of one round over `size` nodes."""
    rules = load_rules(None)
    evaluator = ClusterEvaluator("bench", 3, rules,
                                 AlertTracker(Store(Path(":memory:")), timedelta(minutes=15)))
    data = snapshot(size)
    sources = sorted(rules.sources & data.keys())
    now = datetime(2024, 3, 12, 9, 40, tzinfo=UTC)
    times = []
    for index in range(rounds):
        at = now + timedelta(seconds=10 * index)
        data["nodes"] = written_at(data["nodes"], at)
        started = time.perf_counter()
        for source in sources:
            evaluator.on_poll(PollResult(source, data[source]), at)
        times.append((time.perf_counter() - started) * 1000)
    ordered = sorted(times)
    return statistics.median(times), ordered[min(len(ordered) - 1, round(0.99 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    rules = load_rules(None)
    rows = []
    for size in SIZES:
        median, p99 = measure(size, args.rounds)
        rows.append((size, f"{median:.2f} ms", f"{p99:.2f} ms", "< 25 ms" if size == 1000 else ""))
    intro = (f"`python -m bench.evaluation`: one round of the built-in pack ({len(rules.rules)} "
             f"rules over {', '.join(sorted(rules.sources))}), {args.rounds} rounds per size, "
             f"on {machine()}.")
    publish("Evaluation round", intro, markdown_table(("nodes", "median", "p99", "target"), rows),
            write=args.write)


if __name__ == "__main__":
    main()
