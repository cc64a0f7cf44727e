"""The service: one scheduled job per cluster and source, one notifier loop, one keep-alive.

poll → snapshot → evaluate → alert states happen in the poll job of that cluster and source;
the job then wakes the notifier, which runs the notify pipeline over every alert (dispatch)
and hands what is due from the outbox to background deliveries. Every job is its own
coroutine and every cluster its own HTTP client, so a slow or hanging cluster only ever
delays its own rounds. The keep-alive task tells systemd the service is alive only while
rounds and notifier passes keep completing, so a wedged service gets restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import signal
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watchdog.alerts import Finding, State, Timing
from watchdog.client import ClusterClient
from watchdog.clock import SteadyClock
from watchdog.config import ClusterConfig, Config, Source
from watchdog.evaluation import ClusterEvaluator
from watchdog.heartbeat import Heartbeat
from watchdog.http import Response, Route, StatusServer
from watchdog.logs import config_secrets, redact
from watchdog.metrics import CONTENT_TYPE, LiveState, Metrics
from watchdog.notify import Deliverer, DeliveryResult, Dispatcher, PollContext, Renderer
from watchdog.poller import PollResult, SourcePoller
from watchdog.rules import RuleResult, RuleSet
from watchdog.sourcefile import InvalidInput
from watchdog.status import alert_records, silence_records
from watchdog.store import PollRecord, Store, StoreError
from watchdog.systemd import Notifier, monotonic_usec, watchdog_interval
from watchdog.tracker import AlertTracker

log = logging.getLogger(__name__)

NOTIFIER_TICK = 1.0
STATUS_TICK = 5.0
"""How often STATUS= is refreshed when systemd asks for no keep-alives."""
STOP_BUDGET = 8.0
"""SIGTERM to exit: polls drained, the outbox tried once, within systemd's patience."""
DRAIN_TIMEOUT = 4.0
STATE_BUSY_TIMEOUT = 0.25
"""How long a write waits for another process's lock on the state file before the state is
held in memory (Store's `keep_paging`). The event loop waits with it, and the CLI's own
transactions last milliseconds."""


@dataclass
class ClusterWatch:
    """One cluster: its client, its evaluator, its sources' current poll errors."""

    config: ClusterConfig
    client: ClusterClient
    evaluator: ClusterEvaluator
    poll_errors: dict[Source, str] = field(default_factory=dict)
    rounds: int = 0
    polling: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class Round:
    """What one poll of one source found: the poll's result and each rule's outcome."""

    cluster: str
    poll: PollResult
    outcomes: dict[str, RuleResult]


@dataclass
class Progress:
    """When a round and a notifier pass last completed (monotonic seconds)."""

    started: float = field(default_factory=time.monotonic)
    last_round: float | None = None
    last_pass: float | None = None
    rounds: int = 0

    def stalled_for(self, limit: float) -> float | None:
        """Seconds since the older of the two last completions, if that exceeds `limit`."""
        now = time.monotonic()
        age = now - min(self.last_round or self.started, self.last_pass or self.started)
        return age if age > limit else None


@dataclass
class Cadence:
    """When one job's polls were due: exactly `interval` apart while they run on time.

    A round is evaluated at its poll's due time, not when the answer arrived, as Prometheus
    evaluates rules at aligned timestamps and rule tests at their `at:`. Then `for: 10s` over
    polls every 5 s fires on the third poll that sees the condition, always: evaluated on
    arrival, it fired on the fourth whenever the third poll answered a millisecond quicker
    than the first (half the time). A poll that starts far from its due time (a stepped
    clock, a blocked loop) is due when it starts, and the next ones follow from there.
    """

    interval: timedelta
    due: datetime

    def due_at(self, started: datetime) -> datetime:
        periods = round((started - self.due) / self.interval)
        due = self.due + periods * self.interval
        self.due = due if periods > 0 and abs(started - due) < self.interval / 4 else started
        return self.due


class _Failure:
    """A recurring failure logged when it starts or changes, and when it ends: not each time."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.message: str | None = None

    def failed(self, exc: Exception) -> None:
        """A StoreError says all there is to say; anything else is a bug: its traceback once."""
        message = f"{type(exc).__name__}: {exc}"
        if message != self.message:
            log.error("%s failed: %s", self.what, message,
                      exc_info=None if isinstance(exc, StoreError) else exc)
        self.message = message

    def ok(self) -> None:
        if self.message is not None:
            log.info("%s works again", self.what)
        self.message = None


class Watchdog:
    def __init__(self, config: Config, rules: RuleSet, store: Store,
                 clock: Callable[[], datetime] | None = None,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.rules = rules
        self.store = store
        self.clock = clock or SteadyClock()
        self.metrics = metrics or Metrics()
        self.tracker = AlertTracker(store, _resolved_retention(config))
        self.clusters = {c.name: self._watch(c, rules) for c in config.clusters}
        self.dispatcher = self._dispatcher(config)
        self.deliverer = Deliverer(store, config.delivery, config.channels)
        self.poll_context = PollContext(store)
        self.heartbeat = Heartbeat(config.heartbeat, self._count_heartbeat)
        self.progress = Progress()
        self._kick = asyncio.Event()
        self._scheduler: AsyncIOScheduler | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._failures: dict[str, _Failure] = {}
        self._cadences: dict[str, Cadence] = {}
        self.metrics.watch(LiveState(lambda: list(self.clusters), self.tracker.alerts,
                                     self.store.outbox, self.clock))

    @property
    def sources(self) -> set[Source]:
        return self.rules.sources or {"health"}

    def _watch(self, cluster: ClusterConfig, rules: RuleSet) -> ClusterWatch:
        evaluator = ClusterEvaluator(cluster.name, cluster.unreachable_after, rules,
                                     self.tracker)
        return ClusterWatch(cluster, ClusterClient(cluster), evaluator)

    def _dispatcher(self, config: Config) -> Dispatcher:
        renderer = Renderer(config.templates, {c.name: c.urls[0] for c in config.clusters})
        return Dispatcher(config, self.store, renderer)

    # Rounds ----------------------------------------------------------------------------

    async def poll(self, cluster: str, source: Source,
                   events_since: timedelta = timedelta(0), due: datetime | None = None,
                   ) -> Round:
        """Poll one source, evaluate its rules, advance alert states, wake the notifier.

        The round is evaluated at `due` (see Cadence), else when the answer arrived. Event
        rules see the events after the stored cursor; without one (a first start), those of
        the last `events_since`: none for the service, which never replays history.
        """
        watch = self.clusters[cluster]
        cursor = self.store.cursor(cluster, source) if source == "events" else None
        started = time.perf_counter()
        result = await SourcePoller(watch.client).poll(
            source, due or self.clock(), events_since=events_since, cursor=cursor)
        polled = time.perf_counter()
        if self.clusters.get(cluster) is not watch:
            return Round(cluster, result, {})  # reconfigured while polling: a stale answer
        now = due or self.clock()
        self._record(watch, result, now)
        outcomes = watch.evaluator.on_poll(result, now)
        self.poll_context.observe(cluster, result.items, now)
        if result.ok and result.cursor is not None:
            self.store.set_cursor(cluster, source, result.cursor)
        self._observe(watch, result, outcomes, polled - started, time.perf_counter() - polled)
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

    def _observe(self, watch: ClusterWatch, result: PollResult,
                 outcomes: dict[str, RuleResult], poll_time: float, eval_time: float) -> None:
        labels = (watch.name, result.source)
        m = self.metrics
        m.poll_seconds.labels(*labels).observe(poll_time)
        if result.ok:
            m.last_success.labels(*labels).set(time.time())
        else:
            m.poll_errors.labels(*labels).inc()
        m.evaluation_seconds.labels(*labels).observe(eval_time)
        m.rounds.labels(*labels).inc()
        for rule, outcome in outcomes.items():
            if outcome.errors:
                m.rule_errors.labels(watch.name, rule).inc(len(outcome.errors))
        watch.rounds += 1
        self.progress.rounds += 1
        self.progress.last_round = time.monotonic()

    def _all_clusters_healthy(self) -> bool:
        """Every cluster polled, and its last poll of every source succeeded."""
        return all(w.rounds and not w.poll_errors for w in self.clusters.values())

    # Notifications ---------------------------------------------------------------------

    async def notify_pass(self) -> None:
        """Dispatch every alert through the notify pipeline, then send what is due."""
        self.dispatcher.dispatch(self.tracker.alerts(), self.clock())
        await self._deliver()

    async def _deliver(self) -> None:
        for result in await self.deliverer.deliver_due(self.clock()):
            self._count_delivery(result)

    def _count_delivery(self, result: DeliveryResult) -> None:
        outcome = "sent" if result.ok else "failed"
        self.metrics.notifications.labels(result.channel, outcome).inc()

    def _count_heartbeat(self, ok: bool) -> None:
        self.metrics.heartbeats.labels("ok" if ok else "failed").inc()

    async def _notifier(self, stop: asyncio.Event) -> None:
        """Dispatch after each round (and each tick, for group timers and retries); deliveries
        run in the background, so a slow receiver never holds up the next page."""
        failure = self._failures.setdefault("notifier", _Failure("the notification pass"))
        while not stop.is_set():
            self._kick.clear()
            try:
                self.dispatcher.dispatch(self.tracker.alerts(), self.clock())
                self._spawn(self._deliver())
                failure.ok()
            except Exception as exc:
                failure.failed(exc)
            self.progress.last_pass = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(self._kick, stop), NOTIFIER_TICK)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # Running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, notifier: Notifier | None = None) -> None:
        """Run until `stop` is set; then drain polls and try the outbox once more."""
        notifier = notifier or Notifier()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        self._schedule()
        self._scheduler.start()
        tasks = [asyncio.create_task(self._notifier(stop)),
                 asyncio.create_task(self._keepalive(notifier)),
                 asyncio.create_task(self._follow_clock_steps())]
        notifier.send(READY="1", STATUS=self.status())
        log.info("watching %d cluster(s): %s; sources %s; %d rules", len(self.clusters),
                 ", ".join(self.clusters), ", ".join(sorted(self.sources)),
                 len(self.rules.rules))
        try:
            await stop.wait()
        finally:
            await self._stop(tasks)

    def _schedule(self) -> None:
        """One job per cluster and source; a job whose cluster, source and interval are
        unchanged (on reload) keeps its schedule."""
        assert self._scheduler is not None
        wanted = {f"{watch.name}:{source}": (watch.name, source,
                                             watch.config.intervals.of(source))
                  for watch in self.clusters.values() for source in sorted(self.sources)}
        for job in self._scheduler.get_jobs():
            if job.id not in wanted or job.trigger.interval != wanted[job.id][2]:
                job.remove()
                del self._cadences[job.id]
        existing = {job.id for job in self._scheduler.get_jobs()}
        first = self.clock()
        for job_id, (cluster, source, interval) in wanted.items():
            if job_id in existing:
                continue
            self._cadences[job_id] = Cadence(interval, due=first - interval)
            seconds = interval.total_seconds()
            self._scheduler.add_job(self._job, "interval", seconds=seconds, id=job_id,
                                    args=[cluster, source], next_run_time=first,
                                    coalesce=True, max_instances=1,
                                    misfire_grace_time=math.ceil(seconds))

    async def _follow_clock_steps(self) -> None:
        """APScheduler keeps time by the wall clock: stepped back an hour, it would wait an
        hour for the next poll, and the watchdog would be blind. A job due further ahead
        than its interval has been stepped over: it is made due now, and goes on from there.
        (A forward step needs nothing: overdue jobs run at once.)"""
        assert self._scheduler is not None
        slack = timedelta(seconds=NOTIFIER_TICK)
        while True:
            await asyncio.sleep(NOTIFIER_TICK)
            now = datetime.now(UTC)
            stepped_over = [job for job in self._scheduler.get_jobs() if job.next_run_time
                            and job.next_run_time - now > job.trigger.interval + slack]
            if stepped_over:
                log.warning("the system clock went back: %d poll(s) it put off are due now",
                            len(stepped_over))
            for job in stepped_over:
                job.modify(next_run_time=now)

    async def _job(self, cluster: str, source: Source) -> None:
        """One scheduled poll. Nothing escapes to APScheduler, which would log a traceback
        on every round of a persistent failure."""
        task = asyncio.current_task()
        assert task is not None
        watch = self.clusters[cluster]
        watch.polling.add(task)
        failure = self._failures.setdefault(f"{cluster}:{source}",
                                            _Failure(f"round of {cluster} {source}"))
        try:
            due = self._cadences[f"{cluster}:{source}"].due_at(self.clock())
            await self.poll(cluster, source, due=due)
            failure.ok()
            if self._all_clusters_healthy():
                self.heartbeat.beat()
        except asyncio.CancelledError:
            log.info("cluster %s: %s poll abandoned at stop", cluster, source)
        except Exception as exc:
            failure.failed(exc)
        finally:
            watch.polling.discard(task)

    def _skipped(self, event: JobSubmissionEvent) -> None:
        """A poll still running when its next one is due (a slow cluster): counted."""
        cluster, _, source = event.job_id.rpartition(":")
        self.metrics.polls_skipped.labels(cluster, source).inc()

    async def _keepalive(self, notifier: Notifier) -> None:
        """WATCHDOG=1 at the rate systemd asks, only while rounds and notifier passes keep
        completing; STATUS= with each."""
        interval = watchdog_interval()
        while True:
            await asyncio.sleep(interval or STATUS_TICK)
            fields = {"STATUS": self.status()}
            if interval and self.stalled_for() is None:
                fields["WATCHDOG"] = "1"
            notifier.send(**fields)

    def stalled_for(self) -> float | None:
        """Seconds without a completed round or notifier pass, once past what even a hanging
        cluster explains (its shortest interval plus a login and a poll timing out on every
        URL); None while the service makes progress."""
        budget = max(2 * c.timeout.total_seconds() * len(c.urls) for c in self.config.clusters)
        shortest = min(c.intervals.of(s).total_seconds()
                       for c in self.config.clusters for s in self.sources)
        return self.progress.stalled_for(shortest + budget + NOTIFIER_TICK)

    async def _stop(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        """Drain polls, then dispatch and deliver once more; all within STOP_BUDGET."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_BUDGET
        assert self._scheduler is not None
        self._scheduler.pause()
        await self._drain()
        self._scheduler.shutdown(wait=False)
        for task in tasks:
            task.cancel()
        try:
            async with asyncio.timeout_at(deadline):
                outcomes = await asyncio.gather(self.notify_pass(), *self._background,
                                                return_exceptions=True)
            for failure in (o for o in outcomes if isinstance(o, Exception)):
                log.error("the last notification pass failed: %s", failure)
        except TimeoutError:
            log.warning("stopping with %d notification(s) undelivered; they go out at the "
                        "next start", len(self.store.outbox()))
        for task in self._background:
            task.cancel()
        await self.close()

    async def _drain(self) -> None:
        polling = {task for watch in self.clusters.values() for task in watch.polling}
        if not polling:
            return
        _, hanging = await asyncio.wait(polling, timeout=DRAIN_TIMEOUT)
        if hanging:
            log.warning("stopping: %d poll(s) still waiting on their cluster after %.0f s "
                        "are abandoned", len(hanging), DRAIN_TIMEOUT)
            for task in hanging:
                task.cancel()
            await asyncio.wait(hanging, timeout=1.0)

    async def close(self) -> None:
        await self.heartbeat.close()
        for cluster in self.clusters.values():
            await cluster.client.aclose()

    # Reload ----------------------------------------------------------------------------

    def reconfigure(self, config: Config, rules: RuleSet) -> None:
        """Apply a validated new set while running. Alert state stays with the alerts (the
        tracker is kept); unchanged clusters keep their session, evaluator and schedule; the
        alerts of rules and clusters that are gone resolve, so none stays firing unwatched."""
        now = self.clock()
        gone_rules = {r.name for r in self.rules.rules} - {r.name for r in rules.rules}
        for cluster in self.clusters:
            self._retire(gone_rules, cluster, now)
        old, self.clusters = self.clusters, {}
        for cluster_config in config.clusters:
            watch = old.pop(cluster_config.name, None)
            if watch is not None and watch.config == cluster_config:
                watch.evaluator = watch.evaluator.with_rules(rules)
                self.clusters[watch.name] = watch
                continue
            self.clusters[cluster_config.name] = self._watch(cluster_config, rules)
            if watch is not None:
                self._spawn(_close_after_polls(watch))
        for watch in old.values():
            self._retire({a.name for a in self.tracker.alerts() if a.cluster == watch.name},
                         watch.name, now)
            self._spawn(_close_after_polls(watch))
        self.deliverer.configure(config.delivery, config.channels)
        self.config, self.rules = config, rules
        self.dispatcher = self._dispatcher(config)
        self.heartbeat.config = config.heartbeat
        if self._scheduler is not None:
            self._schedule()

    def _retire(self, alertnames: Iterable[str], cluster: str, now: datetime) -> None:
        for name in alertnames:
            for alert in self.tracker.apply(name, cluster, Timing(), [], set(), now):
                log.info("alert %s %s: its rule or cluster is no longer configured",
                         alert.name, alert.state.value)

    # What it looks like from outside ---------------------------------------------------

    def status(self) -> str:
        """One line for `systemctl status`."""
        alerts = self.tracker.alerts()
        firing = sum(1 for alert in alerts if alert.state is State.FIRING)
        pending = sum(1 for alert in alerts if alert.state is State.PENDING)
        failing = [w.name for w in self.clusters.values() if w.poll_errors]
        text = (f"{len(self.clusters)} cluster(s), {firing} firing, {pending} pending, "
                f"{self.progress.rounds} rounds")
        if failing:
            text += f"; polls failing: {', '.join(failing)}"
        if self.store.fault:
            text += "; STATE IN MEMORY ONLY (the state file fails)"
        stalled = self.stalled_for()
        if stalled is not None:
            text += f"; STALLED: nothing completed for {stalled:.0f} s"
        return text

    def health(self) -> tuple[bool, dict[str, Any]]:
        """`/healthz`: the service itself makes progress (clusters failing is an alert, not
        the watchdog's ill health)."""
        stalled = self.stalled_for()
        clusters = {w.name: {"rounds": w.rounds, "poll_errors": dict(w.poll_errors)}
                    for w in self.clusters.values()}
        return stalled is None, {"status": "ok" if stalled is None else "stalled",
                                 "rounds": self.progress.rounds, "clusters": clusters,
                                 "state_store": self.store.fault or "ok"}


async def _close_after_polls(watch: ClusterWatch) -> None:
    """A replaced cluster's client closes once its polls in flight have finished."""
    if watch.polling:
        await asyncio.wait(set(watch.polling))
    await watch.client.aclose()


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
    """Resolved alerts are kept until every route has had its chance to announce them, and
    while flap detection may still hold back a resolution."""
    longest = max(route.group_wait + route.group_interval for route in config.routes)
    flapping = config.flapping.window if config.flapping else timedelta(0)
    return max(timedelta(minutes=15), 2 * longest, flapping)


# `crdb-watchdog run` ---------------------------------------------------------------------

Loader = Callable[[Path], tuple[Config, RuleSet]]


async def serve(config_path: Path, load: Loader) -> int:
    """`crdb-watchdog run`: until SIGTERM; SIGHUP reloads, keeping the old set if invalid."""
    config, rules = load(config_path)
    redact(config_secrets(config))
    store = Store(config.state, busy_timeout=STATE_BUSY_TIMEOUT, keep_paging=True)
    notifier = Notifier()
    watchdog = Watchdog(config, rules, store)
    server = await _status_server(watchdog)
    stop, reload = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    running = asyncio.create_task(watchdog.run(stop, notifier))
    try:
        while True:
            await _first(stop, reload, task=running)
            if running.done():
                running.result()
                raise RuntimeError("the watchdog stopped without being asked to")
            if stop.is_set():
                break
            reload.clear()
            notifier.send(RELOADING="1", MONOTONIC_USEC=monotonic_usec(),
                          STATUS=f"reloading {config_path}")
            _reload(watchdog, server, config_path, load)
            notifier.send(READY="1", STATUS=watchdog.status())
        notifier.send(STOPPING="1", STATUS="stopping: draining polls, sending the outbox")
        await running
        return 0
    finally:
        if server is not None:
            await server.close()
        store.close()
        notifier.close()


def _reload(watchdog: Watchdog, server: StatusServer | None, path: Path, load: Loader) -> None:
    """The new set, or, if it is invalid, the old one kept running with the errors logged."""
    try:
        config, rules = load(path)
    except InvalidInput as exc:
        log.error("reload refused, still running the previous configuration:\n%s", exc)
        watchdog.metrics.reloads.labels("rejected").inc()
        watchdog.metrics.reload_ok.set(0)
        return
    current = watchdog.config
    if config.state != current.state:
        log.error("reload refused: the state file cannot change while running (%s)",
                  current.state)
        watchdog.metrics.reloads.labels("rejected").inc()
        watchdog.metrics.reload_ok.set(0)
        return
    if config.http.listen != current.http.listen:
        log.warning("http.listen changes take effect at the next start; still on %s",
                    current.http.listen)
    redact(config_secrets(config))
    watchdog.reconfigure(config, rules)
    if server is not None:
        server.token = _token(config)
    watchdog.metrics.reloads.labels("applied").inc()
    watchdog.metrics.reload_ok.set(1)
    log.info("reloaded %s: %d cluster(s), %d rules", path, len(config.clusters),
             len(rules.rules))


async def _status_server(watchdog: Watchdog) -> StatusServer | None:
    """Start the status server. If its address cannot be had, the service still runs (paging
    comes first), and says so loudly."""
    http = watchdog.config.http
    server = StatusServer(http.host, http.port, _routes(watchdog), _token(watchdog.config))
    try:
        await server.start()
    except OSError as exc:
        log.error("status server disabled: cannot listen on %s: %s", http.listen, exc.strerror)
        return None
    log.info("serving /metrics, /healthz, /api/alerts, /api/silences on %s%s", server.address,
             " (bearer token required)" if server.token else "")
    return server


def _token(config: Config) -> str | None:
    token = config.http.token
    return None if token is None else token.get_secret_value()


def _routes(watchdog: Watchdog) -> dict[str, Route]:
    def metrics() -> Response:
        return Response(200, watchdog.metrics.render(), CONTENT_TYPE)

    def healthz() -> Response:
        healthy, detail = watchdog.health()
        return _json(200 if healthy else 503, detail)

    def alerts() -> Response:
        return _json(200, alert_records(watchdog.tracker.alerts()))

    def silences() -> Response:
        return _json(200, silence_records(watchdog.store, watchdog.clock()))

    return {"/metrics": metrics, "/healthz": healthz, "/api/alerts": alerts,
            "/api/silences": silences}


def _json(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value, indent=1).encode(), "application/json")


# `crdb-watchdog once` --------------------------------------------------------------------


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
