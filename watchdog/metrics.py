"""Self-monitoring: the service's own Prometheus metrics, served on `/metrics`.

Counters and histograms are updated where things happen (a poll, a delivery, a reload);
what is a state rather than an event (alerts by state, the outbox) is read from the service
at scrape time, so it can never drift from the truth. One registry per service instance, so
tests and embedded uses never collide on the process-wide default registry.
"""

from __future__ import annotations

import os
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watchdog import __version__
from watchdog.alerts import Alert, State
from watchdog.store import OutboxEntry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; a poll is one request per source, or a few with failover and paging.
_POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_EVAL_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

# `*_created` series double every counter's output and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class LiveState:
    """Where scrape-time values come from: the clusters watched, the alerts, the outbox."""

    clusters: Callable[[], Iterable[str]]
    alerts: Callable[[], Iterable[Alert]]
    outbox: Callable[[], list[OutboxEntry]]
    clock: Callable[[], datetime]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.poll_seconds = Histogram(
            "crdb_watchdog_poll_duration_seconds", "Time to poll one source of one cluster",
            ["cluster", "source"], buckets=_POLL_BUCKETS, registry=r)
        self.poll_errors = Counter(
            "crdb_watchdog_poll_errors", "Polls that failed (every URL, or a bad answer)",
            ["cluster", "source"], registry=r)
        self.polls_skipped = Counter(
            "crdb_watchdog_polls_skipped",
            "Scheduled polls skipped because the previous one of that source still ran",
            ["cluster", "source"], registry=r)
        self.last_success = Gauge(
            "crdb_watchdog_last_successful_poll_timestamp_seconds",
            "When a poll of this source last succeeded (Unix time)",
            ["cluster", "source"], registry=r)
        self.rounds = Counter(
            "crdb_watchdog_rounds", "Completed rounds: a poll, its evaluation, the alert states",
            ["cluster", "source"], registry=r)
        self.evaluation_seconds = Histogram(
            "crdb_watchdog_evaluation_duration_seconds",
            "Time to evaluate one source's rules and advance alert states",
            ["cluster", "source"], buckets=_EVAL_BUCKETS, registry=r)
        self.rule_errors = Counter(
            "crdb_watchdog_rule_errors", "Rule evaluations that failed on some data",
            ["cluster", "rule"], registry=r)
        self.notifications = Counter(
            "crdb_watchdog_notifications",
            "Delivery attempts to one Apprise URL, by outcome (sent or failed)",
            ["channel", "outcome"], registry=r)
        self.reloads = Counter(
            "crdb_watchdog_reloads", "Configuration reloads, by outcome (applied or rejected)",
            ["outcome"], registry=r)
        self.reload_ok = Gauge(
            "crdb_watchdog_config_last_reload_successful",
            "1 if the last reload was applied (or none was asked), 0 if it was rejected",
            registry=r)
        self.heartbeats = Counter(
            "crdb_watchdog_heartbeats", "Dead man's switch calls, by outcome (ok or failed)",
            ["outcome"], registry=r)
        Info("crdb_watchdog_build", "The running version", registry=r).info(
            {"version": __version__})
        r.register(_ProcessCollector())
        self.reload_ok.set(1)
        self._live: LiveState | None = None
        r.register(_LiveCollector(self))

    def watch(self, live: LiveState) -> None:
        """Read scrape-time values from `live` from now on."""
        self._live = live

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ProcessCollector(Collector):
    """The standard `process_*` metrics from the process's own files only: prometheus_client's
    collector needs /proc/stat, which the systemd unit hides (`ProcSubset=pid`)."""

    _started = time.time()
    _page = os.sysconf("SC_PAGE_SIZE")

    def collect(self) -> Iterator[Metric]:
        times = os.times()
        yield CounterMetricFamily("process_cpu_seconds", "User and system CPU time (seconds)",
                                  value=times.user + times.system)
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1]) * self._page
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory (bytes)",
                                value=resident)
        yield GaugeMetricFamily("process_open_fds", "Open file descriptors",
                                value=len(os.listdir("/proc/self/fd")))
        yield GaugeMetricFamily("process_start_time_seconds", "Start time (Unix time)",
                                value=self._started)


class _LiveCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        live = self._metrics._live
        if live is None:
            return
        yield _alerts_by_state(live.clusters(), live.alerts())
        outbox = live.outbox()
        queued = GaugeMetricFamily("crdb_watchdog_notifications_queued",
                                   "Notifications in the outbox, not yet delivered",
                                   labels=["channel"])
        for channel, count in sorted(Tally(entry.channel for entry in outbox).items()):
            queued.add_metric([channel], count)
        yield queued
        oldest = min((entry.created_at for entry in outbox), default=None)
        age = 0.0 if oldest is None else (live.clock() - oldest).total_seconds()
        yield GaugeMetricFamily("crdb_watchdog_outbox_oldest_age_seconds",
                                "Age of the oldest undelivered notification (0: none)",
                                value=max(age, 0.0))


def _alerts_by_state(clusters: Iterable[str], alerts: Iterable[Alert]) -> GaugeMetricFamily:
    """Every cluster and state, zeros included, so a cleared alert reads 0 rather than vanishing."""
    counts = Tally((alert.cluster, alert.state.value) for alert in alerts)
    family = GaugeMetricFamily("crdb_watchdog_alerts", "Alert instances by cluster and state",
                               labels=["cluster", "state"])
    names = sorted({*clusters, *(cluster for cluster, _ in counts)})
    for cluster in names:
        for state in State:
            family.add_metric([cluster, state.value], counts[cluster, state.value])
    return family
