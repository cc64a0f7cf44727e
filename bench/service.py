"""Benchmark the service's cost: resident memory, CPU and API requests of `crdb-watchdog run`
watching 1 and 20 simulated clusters at the default intervals.

    python -m bench.service [--seconds 120] [--warmup 10] [--write]

Each case is a real `crdb-watchdog run` process (the built-in rule pack, the status server on,
nothing firing) against 3-node simulated clusters served from this process. After a warm-up
(imports, first logins), its CPU time (user + system, from /proc/PID/stat) is read over the
measured window and scaled to an hour. That is an extrapolation, not an hour's run; it holds
because the work is periodic and the default window spans two periods of the slowest source
(hot ranges, 60 s). API requests and logins are counted at the simulated clusters over the
same window. Figures are printed, and with --write put in bench/RESULTS.md under their own
heading.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.report import machine, status_mib, write_section
from tests.e2e import Receiver
from watchdog.simulator import SimConfig, SimulatedCluster

TITLE = "Service: memory and CPU of `run`"


@dataclass(frozen=True)
class Measure:
    clusters: int
    sources: str
    rss_mib: float
    peak_mib: float
    startup_cpu: float
    cpu_per_hour: float
    requests_per_minute: dict[str, float]
    """Per cluster, by API path, counted at the simulated clusters over the window."""
    logins: int
    """Logins over the window, all clusters: none while sessions last."""


def measure(clusters: int, seconds: float, warmup: float) -> Measure:
    receiver = Receiver()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        sims = [stack.enter_context(SimulatedCluster(SimConfig(nodes=3)))
                for _ in range(clusters)]
        config = write_config(Path(tmp), sims, receiver.url)
        log_path = Path(tmp) / "run.log"
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "watchdog", "run", "-c", str(config)], stderr=log_file)
        try:
            time.sleep(warmup)
            startup_cpu = cpu_seconds(process.pid)
            for sim in sims:
                sim.reset_counters()
            started = time.monotonic()
            time.sleep(seconds)
            used = cpu_seconds(process.pid) - startup_cpu
            elapsed = time.monotonic() - started
            counted = [sim.counters() for sim in sims]
            rss, peak = status_mib(process.pid, "VmRSS"), status_mib(process.pid, "VmHWM")
        finally:
            process.terminate()
            process.wait(timeout=15)
        log = log_path.read_text()
    receiver.close()
    sources = next((line.split("sources ", 1)[1].split(";")[0] for line in log.splitlines()
                    if "sources " in line), "?")
    requests: Counter[str] = Counter()
    for counters in counted:
        requests.update(counters["requests"])
    per_minute = {path: count / clusters / elapsed * 60 for path, count in requests.items()}
    logins = sum(counters["logins"] for counters in counted)
    return Measure(clusters, sources, rss, peak, startup_cpu, used / elapsed * 3600, per_minute,
                   logins)


def write_config(folder: Path, sims: list[SimulatedCluster], receiver_url: str) -> Path:
    """The built-in rule pack, default intervals and timeouts: no `rules:`, `intervals:` or
    `timeout:` keys."""
    clusters = "".join(f"""\
  - name: sim{index}
    urls: {sim.urls}
    password: secret
""" for index, sim in enumerate(sims, start=1))
    path = folder / "watchdog.yaml"
    path.write_text(f"""\
clusters:
{clusters}channels:
  hook: {{urls: ["{receiver_url}"]}}
routes:
  - channels: [hook]
state: {folder / "state.db"}
http: {{listen: "127.0.0.1:0"}}
""")
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def table(results: list[Measure], seconds: float, warmup: float) -> str:
    rows = ["| clusters | sources polled | resident memory | start-up CPU | CPU per hour "
            "(extrapolated) | API requests per minute per cluster | logins |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {m.clusters} | {m.sources} | {m.rss_mib:.1f} MiB (peak {m.peak_mib:.1f}) "
             f"| {m.startup_cpu:.2f} s | {m.cpu_per_hour:.0f} s "
             f"({m.cpu_per_hour / 36:.2f} % of a core) | {requests_text(m)} | {m.logins} |"
             for m in results]
    return "\n".join([
        f"`python -m bench.service` on {machine()}. A real "
        f"`crdb-watchdog run` per case, 3-node simulated clusters, default intervals, nothing "
        f"firing; CPU measured over {seconds:.0f} s after a {warmup:.0f} s warm-up and scaled "
        f"to an hour (an extrapolation, not an hour's run). Target: under 80 MiB for one "
        f"cluster.", "", *rows, ""])


def requests_text(measure: Measure) -> str:
    """`82 (health/ 72, nodes/ 6, …)`: the total and each path's share."""
    paths = sorted(measure.requests_per_minute.items(), key=lambda item: -item[1])
    total = sum(measure.requests_per_minute.values())
    return f"{total:.0f} ({', '.join(f'{path} {rate:.1f}' for path, rate in paths)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    results = []
    for clusters in (1, 20):
        results.append(measure(clusters, args.seconds, args.warmup))
        print(results[-1], flush=True)
    text = table(results, args.seconds, args.warmup)
    print(text)
    if args.write:
        write_section(TITLE, text)


if __name__ == "__main__":
    main()
