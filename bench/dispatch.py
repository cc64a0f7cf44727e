"""Benchmark the notify pipeline: from an alert changing state to the notification reaching a
local receiver; and what reading silences on every pass costs.

    python -m bench.dispatch [--notifications 100] [--write]

In one process, as the service runs it: the alert tracker advances an alert (it fires, or
it resolves) and persists it; the dispatcher mutes (silences read from the state store,
inhibition, flap detection), groups, deduplicates, renders and queues it in the outbox;
the deliverer sends it through Apprise to a webhook receiver behind `json://` on
127.0.0.1. The clock starts before the state change and stops when the receiver has the
request. Each node's alert is its own group (`group_by` node_id, no waiting), so every
change is a notification: half pages, half resolutions. Figures are printed and written to
bench/RESULTS.md with --write.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from pydantic import SecretStr

from bench.pipeline import percentile
from bench.report import machine, markdown_table, publish
from tests.e2e import Receiver
from watchdog.alerts import Finding, Timing
from watchdog.config import ChannelConfig, ClusterConfig, Config, RouteConfig
from watchdog.notify import Deliverer, Dispatcher, Renderer, notify_test
from watchdog.notify.silences import KEEP_ENDED, new_silence, parse_matcher
from watchdog.store import Store
from watchdog.tracker import AlertTracker

RULE = "NodeLivenessLost"


def bench_config(receiver_url: str, state: Path) -> Config:
    return Config(
        clusters=[ClusterConfig(name="bench", urls=["http://127.0.0.1:9"])],
        channels={"hook": ChannelConfig(urls=[SecretStr(receiver_url)])},
        routes=[RouteConfig(channels=["hook"], group_by=["cluster", "alertname", "node_id"],
                            group_interval=timedelta(0))],
        state=state)


def finding(node: int) -> Finding:
    labels = {"alertname": RULE, "cluster": "bench", "severity": "critical",
              "node_id": str(node), "address": f"crdb-{node}:26257"}
    return Finding(labels, {"summary": f"Node {node} is UNAVAILABLE"})


async def latencies(notifications: int, folder: Path) -> list[float]:
    """Seconds from each state change to the receiver having its notification."""
    receiver = Receiver()
    store = Store(folder / "latency.db")
    config = bench_config(receiver.url, store.path)
    tracker = AlertTracker(store, timedelta(minutes=15))
    dispatcher = Dispatcher(config, store, Renderer())
    deliverer = Deliverer(store, config.delivery, config.channels)
    await notify_test([receiver.url], "warm-up", "Apprise loads its plugins once", "text")
    seconds = []
    try:
        for change in range(notifications):
            node, fires = change // 2, change % 2 == 0
            received = len(receiver.payloads)
            started = time.monotonic()
            now = datetime.now(UTC)
            tracker.apply(RULE, "bench", Timing(), [finding(node)] if fires else [], set(), now)
            dispatcher.dispatch(tracker.alerts(), now)
            await deliverer.deliver_due(now)
            if len(receiver.payloads) != received + 1:
                raise RuntimeError(f"change {change}: no notification arrived")
            seconds.append(receiver.received_at[received] - started)
    finally:
        store.close()
        receiver.close()
    return seconds


def muting_costs(folder: Path, alerts: int = 100) -> dict[str, float]:
    """Median seconds of one silence lookup at several table sizes, and of one dispatch pass
    over `alerts` firing alerts already paged (nothing to send) with 10 silences."""
    store = Store(folder / "muting.db")
    config = bench_config("json://127.0.0.1:9/hook", store.path)
    tracker = AlertTracker(store, timedelta(minutes=15))
    now = datetime.now(UTC)
    tracker.apply(RULE, "bench", Timing(), [finding(n) for n in range(alerts)], set(), now)
    dispatcher = Dispatcher(config, store, Renderer())
    held = tracker.alerts()
    dispatcher.dispatch(held, now)
    lookup = partial(store.silences, active_at=now)
    costs = {"silences(0)": _median(lookup)}
    _add_silences(store, 10, now)
    costs["silences(10)"] = _median(lookup)
    costs["pass"] = _median(partial(dispatcher.dispatch, held, now))
    _add_silences(store, 990, now)
    costs["silences(1000)"] = _median(lookup)
    store.close()
    return costs


def _add_silences(store: Store, count: int, now: datetime) -> None:
    """Active silences that match none of the alerts: each is checked against every alert."""
    for _ in range(count):
        silence = new_silence([parse_matcher("node_id=elsewhere")], timedelta(hours=1),
                              "bench", "bench", now)
        store.add_silence(silence, forget_ended_before=now - KEEP_ENDED)


def _median(call: Callable[[], object], runs: int = 200) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notifications", type=int, default=100)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ms = [s * 1000 for s in asyncio.run(latencies(args.notifications, Path(tmp)))]
        costs = muting_costs(Path(tmp))
    pages, resolutions = ms[0::2], ms[1::2]
    rows = [
        ("state change → receiver, median", f"{statistics.median(ms):.1f} ms", "< 10 ms"),
        ("state change → receiver, p99", f"{percentile(ms, 0.99):.1f} ms", ""),
        ("pages / resolutions, median",
         f"{statistics.median(pages):.1f} / {statistics.median(resolutions):.1f} ms", ""),
        *((f"silence lookup, {size} kept", f"{costs[f'silences({size})'] * 1e6:.0f} µs", "")
          for size in (0, 10, 1000)),
        ("dispatch pass, 100 alerts paged, 10 silences, nothing to send",
         f"{costs['pass'] * 1000:.2f} ms", ""),
    ]
    intro = (f"`python -m bench.dispatch` on {machine()}: {args.notifications} notifications "
             "(tracker → dispatcher → outbox → Apprise `json://` → local receiver), one "
             "process.")
    publish("Notify pipeline: state change to receiver", intro,
            markdown_table(("measure", "result", "target"), rows), write=args.write)


if __name__ == "__main__":
    main()
