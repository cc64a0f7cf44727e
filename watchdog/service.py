"""The service: one scheduled job per cluster and source, and one notifier loop.

poll → snapshot → evaluate → alert states happen in the poll job of that cluster and source;
the job then wakes the notifier, which runs the notify pipeline over every alert (dispatch)
and sends what is due from the outbox (deliver). One notifier task means one sender: an
outbox entry is never sent twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watchdog.alerts import Finding
from watchdog.client import ClusterClient
from watchdog.config import ClusterConfig, Config, Source
from watchdog.evaluation import ClusterEvaluator
from watchdog.notify import Deliverer, Dispatcher, Renderer
from watchdog.poller import PollResult, SourcePoller
from watchdog.rules import RuleResult, RuleSet
from watchdog.sourcefile import InvalidInput
from watchdog.store import PollRecord, Store
from watchdog.systemd import Notifier, watchdog_interval
from watchdog.tracker import AlertTracker

log = logging.getLogger(__name__)

NOTIFIER_TICK = 1.0
STOP_TIMEOUT = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ClusterWatch:
    """One cluster: its client, its evaluator, and its sources' current poll errors."""

    config: ClusterConfig
    client: ClusterClient
    evaluator: ClusterEvaluator
    poll_errors: dict[Source, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class Round:
    """What one poll of one source found: the poll's result and each rule's outcome."""

    cluster: str
    poll: PollResult
    outcomes: dict[str, RuleResult]


class Watchdog:
    def __init__(self, config: Config, rules: RuleSet, store: Store,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.rules = rules
        self.store = store
        self.clock = clock
        self.tracker = AlertTracker(store, _resolved_retention(config))
        self.clusters = {
            c.name: ClusterWatch(c, ClusterClient(c),
                                 ClusterEvaluator(c.name, c.unreachable_after, rules,
                                                  self.tracker))
            for c in config.clusters}
        renderer = Renderer(config.templates, {c.name: c.urls[0] for c in config.clusters})
        self.dispatcher = Dispatcher(config, store, renderer)
        self.deliverer = Deliverer(store, config.delivery)
        self.sources: set[Source] = rules.sources or {"health"}
        self._kick = asyncio.Event()
        self._rounds = 0

    async def poll(self, cluster: str, source: Source,
                   events_since: timedelta = timedelta(0)) -> Round:
        """Poll one source, evaluate its rules, advance alert states, wake the notifier.

        Event rules see the events after the stored cursor; without one (a first start),
        those of the last `events_since`: none for the service, which never replays history.
        """
        watch = self.clusters[cluster]
        cursor = self.store.cursor(cluster, source) if source == "events" else None
        result = await SourcePoller(watch.client).poll(
            source, self.clock(), events_since=events_since, cursor=cursor)
        now = self.clock()
        self._record(watch, result, now)
        outcomes = watch.evaluator.on_poll(result, now)
        if result.ok and result.cursor is not None:
            self.store.set_cursor(cluster, source, result.cursor)
        self._rounds += 1
        self._kick.set()
        return Round(cluster, result, outcomes)

    def _record(self, watch: ClusterWatch, result: PollResult, now: datetime) -> None:
        """Log a poll failure when it starts or changes, and its recovery: not every round."""
        previous = watch.poll_errors.get(result.source)
        if result.error != previous:
            if result.error:
                log.warning("cluster %s: polling %s failed: %s", watch.name, result.source,
                            result.error)
            else:
                log.info("cluster %s: polling %s works again", watch.name, result.source)
        if result.error:
            watch.poll_errors[result.source] = result.error
        else:
            watch.poll_errors.pop(result.source, None)
        self.store.record_poll(PollRecord(watch.name, result.source, now, result.ok,
                                          result.error))

    async def notify_pass(self) -> None:
        """Dispatch every alert through the notify pipeline, then send what is due."""
        now = self.clock()
        self.dispatcher.dispatch(self.tracker.alerts(), now)
        await self.deliverer.deliver_due(now)

    async def run(self, stop: asyncio.Event, notifier: Notifier | None = None) -> None:
        """Run until `stop` is set; then drain polls and try the outbox once more."""
        notifier = notifier or Notifier()
        scheduler = AsyncIOScheduler(timezone=UTC)
        inflight: set[asyncio.Task[Round]] = set()

        async def job(cluster: str, source: Source) -> None:
            task = asyncio.ensure_future(self.poll(cluster, source))
            inflight.add(task)
            try:
                await task
            finally:
                inflight.discard(task)

        for cluster in self.clusters.values():
            for source in sorted(self.sources):
                interval = cluster.config.intervals.of(source).total_seconds()
                scheduler.add_job(job, "interval", seconds=interval, args=[cluster.name, source],
                                  id=f"{cluster.name}:{source}", next_run_time=self.clock(),
                                  coalesce=True, max_instances=1,
                                  misfire_grace_time=math.ceil(interval))
        scheduler.start()
        notify_loop = asyncio.create_task(self._notifier(stop, notifier))
        notifier.send(READY="1", STATUS=self._status())
        log.info("watching %d cluster(s): %s; sources %s; %d rules", len(self.clusters),
                 ", ".join(self.clusters), ", ".join(sorted(self.sources)),
                 len(self.rules.rules))
        await stop.wait()
        scheduler.pause()
        if inflight:
            await asyncio.wait(set(inflight), timeout=STOP_TIMEOUT)
        scheduler.shutdown(wait=False)
        await notify_loop
        await self.close()

    async def _notifier(self, stop: asyncio.Event, notifier: Notifier) -> None:
        keepalive = watchdog_interval()
        last_rounds, last_keepalive = -1, 0.0
        loop = asyncio.get_running_loop()
        while True:
            self._kick.clear()
            try:
                await self.notify_pass()
            except Exception:
                log.exception("notification pass failed; retrying in %.0fs", NOTIFIER_TICK)
            if stop.is_set():
                return
            if keepalive and self._rounds != last_rounds and \
                    loop.time() - last_keepalive >= keepalive:
                last_rounds, last_keepalive = self._rounds, loop.time()
                notifier.send(WATCHDOG="1", STATUS=self._status())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(self._kick, stop), NOTIFIER_TICK)

    def _status(self) -> str:
        firing = sum(1 for alert in self.tracker.alerts() if alert.state == "firing")
        return f"{len(self.clusters)} cluster(s), {firing} firing, {self._rounds} polls"

    async def close(self) -> None:
        for cluster in self.clusters.values():
            await cluster.client.aclose()


async def _first(*events: asyncio.Event, task: asyncio.Future[Any] | None = None) -> None:
    """Wait until one of the events is set (or `task` ends)."""
    waiters: set[asyncio.Future[Any]] = {asyncio.create_task(event.wait()) for event in events}
    try:
        await asyncio.wait(waiters | ({task} if task else set()),
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _resolved_retention(config: Config) -> timedelta:
    """Resolved alerts are kept until every route has had its chance to announce them."""
    longest = max(route.group_wait + route.group_interval for route in config.routes)
    return max(timedelta(minutes=15), 2 * longest)


async def serve(config_path: Path, load: Callable[[Path], tuple[Config, RuleSet]]) -> int:
    """`crdb-watchdog run`: until SIGTERM; SIGHUP reloads, keeping the old set if invalid."""
    config, rules = load(config_path)
    store = Store(config.state)
    notifier = Notifier()
    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    try:
        while True:
            halt = asyncio.Event()
            running = asyncio.create_task(Watchdog(config, rules, store).run(halt, notifier))
            await _first(stop, reload, task=running)
            if running.done():
                running.result()
                raise RuntimeError("the watchdog stopped without being asked to")
            notifier.send(STOPPING="1") if stop.is_set() else notifier.send(RELOADING="1")
            halt.set()
            await running
            if stop.is_set():
                return 0
            reload.clear()
            config, rules = _reloaded(config_path, load, (config, rules))
    finally:
        store.close()
        notifier.close()


def _reloaded(path: Path, load: Callable[[Path], tuple[Config, RuleSet]],
              current: tuple[Config, RuleSet]) -> tuple[Config, RuleSet]:
    try:
        config, rules = load(path)
    except InvalidInput as exc:
        log.error("reload refused, still running the previous configuration:\n%s", exc)
        return current
    if config.state != current[0].state:
        log.error("reload refused: the state file cannot change while running (%s)",
                  current[0].state)
        return current
    log.info("reloaded %s: %d rules", path, len(rules.rules))
    return config, rules


async def run_once(config: Config, rules: RuleSet, store: Store, *,
                   dry_run: bool) -> dict[str, list[dict[str, Any]]]:
    """`crdb-watchdog once`: one poll of every source of every cluster, through the pipeline.

    A dry run works on an in-memory copy of the state: nothing is stored and nothing sent.
    The report lists the instances whose condition holds now, ignoring `for`.
    """
    watchdog = Watchdog(config, rules, store.scratch_copy() if dry_run else store)
    alerts: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    try:
        for watch in watchdog.clusters.values():
            for source in sorted(watchdog.sources):
                since = watch.config.intervals.of(source)
                done = await watchdog.poll(watch.name, source, events_since=since)
                if done.poll.error:
                    errors.append({"cluster": watch.name, "source": source,
                                   "message": done.poll.error})
                for name, outcome in done.outcomes.items():
                    alerts.extend(_finding_report(f) for f in outcome.findings)
                    errors.extend({"cluster": watch.name, "rule": name, "message": message}
                                  for message in outcome.errors)
        if not dry_run:
            await watchdog.notify_pass()
    finally:
        await watchdog.close()
    return {"alerts": alerts, "errors": errors}


def _finding_report(finding: Finding) -> dict[str, Any]:
    labels = dict(finding.labels)
    return {"alert": labels["alertname"], "cluster": labels["cluster"],
            "severity": labels.get("severity", ""), "labels": labels, **finding.annotations}
