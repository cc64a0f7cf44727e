"""Every benchmark, one table: `python -m bench [--quick]`, about 5 minutes on 2 cores.

Runs, one after the other so that none disturbs another's timing: time to page end to end
(bench.page), dispatch latency (bench.pipeline), one evaluation round at 10, 100 and 1,000
nodes (bench.evaluation), and the resident memory, idle CPU and API requests of `run`
watching one cluster at the default intervals (bench.service). Prints the table and writes it
to bench/RESULTS.md ("Summary"); each module, run alone, gives more detail.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from bench import evaluation, page, pipeline, service
from bench.report import machine, markdown_table, publish
from watchdog.config import Intervals, Source

TITLE = "Summary: `python -m bench`"
URLS = 3  # the simulated clusters' nodes, each URL probed by health


def expected_requests_per_minute() -> float:
    """What the schedule asks at the default intervals: health probes `/health/` and
    `?ready=true` of every URL, nodes and events one request a poll, hot ranges two (a page
    and the empty page that ends the paging)."""
    per_poll: dict[Source, int] = {"health": 2 * URLS, "nodes": 1, "events": 1,
                                   "hot_ranges": 2}
    defaults = Intervals()
    return sum(count * 60 / defaults.of(source).total_seconds()
               for source, count in per_poll.items())


def rows(incidents: int, service_seconds: float) -> list[tuple[str, str, str]]:
    table = page.rows(page.run(incidents))
    fire = [s * 1000 for s in asyncio.run(pipeline.dispatch_latency(20))["fire"]]
    table.append(("dispatch: the poll whose data fires an alert → receiver (20 pages)",
                  f"median {statistics.median(fire):.1f} ms, p99 "
                  f"{pipeline.percentile(fire, 0.99):.1f} ms", "< 10 ms median"))
    medians = [evaluation.measure(size, 30)[0] for size in evaluation.SIZES]
    table.append(("evaluation round, built-in pack, 10 / 100 / 1,000 nodes (median)",
                  " / ".join(f"{ms:.2f}" for ms in medians) + " ms", "< 25 ms at 1,000"))
    idle = service.measure(1, service_seconds, warmup=10)
    table += [
        ("resident memory of `run`, one cluster", f"{idle.rss_mib:.1f} MiB", "< 80 MiB"),
        ("idle CPU of `run`, one cluster, nothing firing",
         f"{idle.cpu_per_hour / 36:.2f} % of a core ({idle.cpu_per_hour:.0f} s an hour)",
         "none set"),
        ("API requests per minute, one 3-node cluster, default intervals",
         f"{service.requests_text(idle)}; {idle.logins} logins",
         f"the schedule's {expected_requests_per_minute():.0f}; no login while the session "
         "lasts"),
    ]
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true",
                        help="2 incidents per setup and 60 s of idling: a smoke run")
    args = parser.parse_args()
    incidents, seconds = (2, 60.0) if args.quick else (4, 120.0)
    table = markdown_table(("measure", "result", "target, floor"), rows(incidents, seconds))
    intro = (
        f"`python -m bench` on {machine()}. Time to page: a real `crdb-watchdog run` per "
        f"setup, a 3-node simulated cluster with a {page.TTL:g} s liveness TTL in real time, a "
        "node killed at a random moment; its floor is TTL + ceil(for / P) · P plus the poll "
        "phase w ∈ [0, P), for nodes polls every P s (bench/page.py). Memory, CPU and "
        f"requests: `run` with the built-in pack, default intervals, over {seconds:.0f} s "
        "after a 10 s warm-up (bench/service.py).")
    publish(TITLE, intro, table, write=True)


if __name__ == "__main__":
    main()
