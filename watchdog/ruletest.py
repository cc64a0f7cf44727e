"""Rule unit tests (`crdb-watchdog test FILE...`), in the manner of `promtool test rules`.

A test file names rule files (none: the built-in pack) and holds tests. A test is a series of
steps; a step is what some sources' polls returned at a time (a recorded body, inline items,
or a failed poll) and the alerts expected firing or pending after those polls. Each response
goes through the snapshot parsers into `ClusterEvaluator.on_poll`, with a tracker on an
in-memory store, exactly as in the service: a rule test proves what runs.

    rule_files: [../liveness.yaml]
    tests:
      - name: a node that loses liveness pages on the first poll that sees it
        steps:
          - {at: 0s, nodes: nodes_3_live.json, firing: []}
          - at: 10s
            nodes: {file: nodes_3_live.json, nodes: {2: {liveness_status: 2}}}
            firing: [{alertname: NodeLivenessLost, node_id: 2}]

A recorded `nodes` body is replayed as if fetched at its step: every node's `updated_at` moves
forward by the time between the body's newest `updated_at` and the step, so a body repeated
for an hour describes nodes that keep writing their status, as live ones do. What the test
itself writes (overrides, inline items) is taken as written. The README has the full format.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from watchdog.alerts import Alert, State
from watchdog.config import SOURCES, Source
from watchdog.durations import Duration, format_duration
from watchdog.evaluation import CLUSTER_UNREACHABLE, ClusterEvaluator
from watchdog.poller import PollResult
from watchdog.rules import RuleSet, load_rules
from watchdog.snapshot import (
    HealthItem,
    PayloadError,
    dedupe_hot_ranges,
    parse_events,
    parse_hot_ranges,
    parse_nodes,
)
from watchdog.sourcefile import InvalidInput, Loc, Problem, SourceFile, load_yaml
from watchdog.store import Store
from watchdog.tracker import AlertTracker

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
M = TypeVar("M", bound=BaseModel)
RESOLVED_RETENTION = timedelta(days=1)
"""Longer than any test: a resolved alert is still there to say "resolved" when expected."""


# The test file as written --------------------------------------------------------------


def _text(value: Any) -> Any:
    """`node_id: 2` is an integer in YAML; labels and ids are text."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Text = Annotated[str, BeforeValidator(_text)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FailedPollSpec(_Spec):
    """`{error: connection refused, cluster_down: true}`: the poll failed (every URL: down)."""

    error: str
    cluster_down: bool = False


class HealthSpec(_Spec):
    """What one URL's `/health/` and `/health/?ready=true` said; a healthy URL by default."""

    url: str
    node_id: int | None = None
    ok: bool = True
    ready: bool | None = None
    status: int | None = None
    error: str | None = None
    latency: float | None = None

    def item(self) -> HealthItem:
        ready = self.ok if self.ready is None else self.ready
        status = self.status if self.status is not None else (200 if self.ok else None)
        return HealthItem(self.url, self.node_id, self.ok, ready, status, self.error,
                          self.latency)


class ExpectedSpec(BaseModel):
    """`{alertname: X, node_id: 2, annotations: {summary: ...}}`: labels an alert must have."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Text] = Field(init=False)

    annotations: dict[str, str] = {}


class RecordedNodesSpec(_Spec):
    """`{file: PATH, nodes: {ID: {field: value}}}`: a recorded body, some nodes changed."""

    file: str
    nodes: dict[Text, dict[str, Any]] = {}


class RecordedEventsSpec(_Spec):
    file: str
    events: dict[Text, dict[str, Any]] = {}


class RecordedRangesSpec(_Spec):
    file: str
    ranges: dict[Text, dict[str, Any]] = {}


class StepSpec(_Spec):
    at: Duration
    health: Any = None
    nodes: Any = None
    events: Any = None
    hot_ranges: Any = None
    firing: list[ExpectedSpec] | None = None
    pending: list[ExpectedSpec] | None = None


class RuleTestSpec(_Spec):
    name: str
    steps: list[StepSpec] = Field(min_length=1)


class RuleTestFileSpec(_Spec):
    rule_files: list[str] | None = None
    cluster: str = "test"
    unreachable_after: int = Field(default=3, ge=1)
    start: AwareDatetime | None = None
    tests: list[RuleTestSpec] = Field(min_length=1)


# What a test runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedAlert:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    line: int | None

    def matches(self, alert: Alert) -> bool:
        return all(alert.labels.get(key) == value for key, value in self.labels.items())

    def __str__(self) -> str:
        return _describe(self.labels)


@dataclass(frozen=True)
class Expectation:
    """The alerts in one state after a step: each expected one present, and no other."""

    state: State
    alerts: tuple[ExpectedAlert, ...]
    line: int | None

    def unmet(self, alerts: Sequence[Alert]) -> Iterator[tuple[int | None, str]]:
        """(line, message) for each expected alert missing and each alert not expected."""
        actual = [alert for alert in alerts if alert.state is self.state]
        pairs = _pairs(self.alerts, actual)
        for index, expected in enumerate(self.alerts):
            if index not in pairs:
                yield expected.line, (f"expected {self.state.value} {expected}: "
                                      f"{self._instead(expected, alerts)}")
                continue
            found = actual[pairs[index]]
            for key, text in expected.annotations.items():
                if found.annotations.get(key) != text:
                    yield expected.line, (f"{expected}: {key} is "
                                          f"{found.annotations.get(key)!r}, expected {text!r}")
        matched = set(pairs.values())
        for index, alert in enumerate(actual):
            if index not in matched:
                yield self.line, f"unexpected {self.state.value} {_describe(alert.labels)}"

    def _instead(self, expected: ExpectedAlert, alerts: Sequence[Alert]) -> str:
        states = [alert.state for alert in alerts if expected.matches(alert)]
        if self.state in states:
            return (f"the {states.count(self.state)} {self.state.value} alerts it matches are "
                    "all matched by other expected alerts")
        return f"it is {states[0].value}" if states else "no such alert"


@dataclass(frozen=True)
class Step:
    at: timedelta
    polls: tuple[PollResult, ...]
    expectations: tuple[Expectation, ...]
    line: int | None


@dataclass(frozen=True)
class RuleTest:
    name: str
    start: datetime
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class RuleTestFile:
    path: str
    rules: RuleSet
    cluster: str
    unreachable_after: int
    tests: tuple[RuleTest, ...]


def _describe(labels: Mapping[str, str]) -> str:
    """`NodeDead{node_id="2", …}`: an alert as Prometheus writes it, without the cluster."""
    inner = ", ".join(f'{key}="{value}"' for key, value in labels.items()
                      if key not in ("alertname", "cluster"))
    return f"{labels.get('alertname', '')}{{{inner}}}"


def _pairs(expected: Sequence[ExpectedAlert], actual: Sequence[Alert]) -> dict[int, int]:
    """A largest one-to-one matching, expected index → actual index (augmenting paths):
    `{alertname: X}` and `{alertname: X, node_id: 2}` together must find two alerts."""
    owner: dict[int, int] = {}

    def claim(want: int, tried: set[int]) -> bool:
        for index, alert in enumerate(actual):
            if index in tried or not expected[want].matches(alert):
                continue
            tried.add(index)
            if index not in owner or claim(owner[index], tried):
                owner[index] = want
                return True
        return False

    for want in range(len(expected)):
        claim(want, set())
    return {want: index for index, want in owner.items()}


# Recorded and written API bodies ---------------------------------------------------------


def _nanos(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1) * 1000


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _nodes_poll(body: Any) -> PollResult:
    return PollResult("nodes", parse_nodes(body))


def _events_poll(body: Any) -> PollResult:
    return PollResult("events", parse_events(body))


def _hot_ranges_poll(body: Any) -> PollResult:
    ranges, errors = parse_hot_ranges(body)
    return PollResult("hot_ranges", dedupe_hot_ranges(ranges), unreported=dict(errors))


def _recorded_at(items: Sequence[Any]) -> int | None:
    """When a nodes body was fetched, near enough: its newest status write (ns)."""
    writes = [item["updated_at"] for item in items
              if isinstance(item, dict) and isinstance(item.get("updated_at"), int)]
    return max(writes, default=None)


def _replay(items: list[Any], now: datetime) -> None:
    """Move a recorded nodes body's status writes forward as if it were fetched `now`."""
    recorded = _recorded_at(items)
    if recorded is None:
        return
    shift = _nanos(now) - recorded
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("updated_at"), int):
            item["updated_at"] += shift


def _merged(base: Mapping[str, Any], override: Mapping[Any, Any]) -> dict[str, Any]:
    """Override fields, merging mappings key by key (`metrics: {sys.fd.open: 9}`); keys are
    text as in JSON, so `store_metrics: {1: ...}` is store "1"."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(str(key)), Mapping):
            value = _merged(merged[str(key)], value)
        merged[str(key)] = value
    return merged


@dataclass(frozen=True)
class BodyFormat:
    """How a source's API body is written in a test: its item list, what overrides are keyed
    by, how times go on the wire, how it parses; `replayed`: see the module docstring."""

    list_key: str
    id_field: str
    recorded: type[BaseModel]
    wire_time: Callable[[datetime], Any]
    poll: Callable[[Any], PollResult]
    replayed: bool = False

    def encoded(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Written values in the API's encoding: times may be YAML times, `info` a mapping."""
        out = {}
        for key, value in fields.items():
            if isinstance(value, datetime):
                value = self.wire_time(_aware(value))
            elif key == "info" and isinstance(value, Mapping):
                value = json.dumps(value, sort_keys=True)
            out[key] = value
        return out


FORMATS: dict[Source, BodyFormat] = {
    "nodes": BodyFormat("nodes", "node_id", RecordedNodesSpec, _nanos, _nodes_poll,
                        replayed=True),
    "events": BodyFormat("events", "unique_id", RecordedEventsSpec, _rfc3339, _events_poll),
    "hot_ranges": BodyFormat("ranges", "range_id", RecordedRangesSpec, _nanos,
                             _hot_ranges_poll),
}


# Loading ---------------------------------------------------------------------------------


def load_test_file(path: Path) -> RuleTestFile:
    """Read, check and prepare every test of a file; InvalidInput lists every problem."""
    source = load_yaml(path)
    spec = _validated(source, RuleTestFileSpec, source.data, ())
    patterns = None if spec.rule_files is None else [
        str(path.parent / pattern) for pattern in spec.rule_files]
    rules = load_rules(patterns)
    loader = _Loader(source, rules)
    tests = tuple(loader.test(index, test, spec.start) for index, test in enumerate(spec.tests))
    if loader.problems:
        raise InvalidInput(loader.problems)
    return RuleTestFile(str(path), rules, spec.cluster, spec.unreachable_after, tests)


def _validated(source: SourceFile, model: type[M], value: Any, loc: Loc) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidInput(source.validation_problems(exc, loc)) from None


class _Loader:
    """Turns one file's test specs into steps of PollResults, collecting every problem."""

    def __init__(self, source: SourceFile, rules: RuleSet) -> None:
        self.source = source
        self.base = Path(source.path).parent
        self.alertnames = {rule.name for rule in rules.rules} | {CLUSTER_UNREACHABLE}
        self.problems: list[Problem] = []

    def test(self, index: int, spec: RuleTestSpec, start: datetime | None) -> RuleTest:
        loc: Loc = ("tests", index)
        start = start or self._recorded_start(spec, loc) or EPOCH
        steps = []
        for number, step in enumerate(spec.steps):
            where = (*loc, "steps", number)
            if number and step.at <= spec.steps[number - 1].at:
                self.problems.append(self.source.problem(
                    (*where, "at"), "at: must be later than the step before"))
            steps.append(self._step(where, step, start + step.at))
        return RuleTest(spec.name, start, tuple(steps))

    def _recorded_start(self, spec: RuleTestSpec, loc: Loc) -> datetime | None:
        """By default a test starts when its first recorded nodes body was fetched."""
        names = (step.nodes if isinstance(step.nodes, str) else
                 step.nodes.get("file") if isinstance(step.nodes, dict) else None
                 for step in spec.steps)
        name = next((name for name in names if isinstance(name, str)), None)
        if name is None:
            return None
        try:
            body = self._read(name, loc)
        except InvalidInput:
            return None  # reported with its step's line when that step is built
        recorded = _recorded_at(body.get("nodes") or [])
        return None if recorded is None else EPOCH + timedelta(microseconds=recorded // 1000)

    def _step(self, loc: Loc, spec: StepSpec, now: datetime) -> Step:
        polls = []
        for source in SOURCES:
            value = getattr(spec, source)
            if value is None:
                continue
            try:
                polls.append(self._poll(source, value, (*loc, source), now))
            except InvalidInput as exc:
                self.problems += exc.problems
        expectations = tuple(
            self._expectation(state, expected, (*loc, state.value))
            for state, expected in ((State.FIRING, spec.firing), (State.PENDING, spec.pending))
            if expected is not None)
        return Step(spec.at, tuple(polls), expectations, self.source.line_of(loc))

    def _poll(self, source: Source, value: Any, loc: Loc, now: datetime) -> PollResult:
        if isinstance(value, dict) and "error" in value:
            failed = _validated(self.source, FailedPollSpec, value, loc)
            return PollResult(source, error=failed.error, cluster_down=failed.cluster_down)
        if source == "health":
            return PollResult(source, self._health(value, loc))
        body_format = FORMATS[source]
        body = self._body(body_format, value, loc, now)
        try:
            return body_format.poll(body)
        except PayloadError as exc:
            self._fail(loc, f"{source}: {exc}")

    def _health(self, value: Any, loc: Loc) -> list[HealthItem]:
        if not isinstance(value, list):
            self._fail(loc, "health: give a list of URL results, or {error: ...} for a failed "
                            "poll")
        items = [_validated(self.source, HealthSpec, entry, (*loc, index)).item()
                 for index, entry in enumerate(value)]
        if items and not any(item.ok for item in items):
            self._fail(loc, "health: no URL answers, which the service counts as a failed "
                            "poll: write {error: ..., cluster_down: true}")
        return items

    def _body(self, body_format: BodyFormat, value: Any, loc: Loc,
              now: datetime) -> dict[str, Any]:
        """A recorded body (file, overrides) or inline items, as the API would send it."""
        key = body_format.list_key
        if isinstance(value, list):
            return {key: [body_format.encoded(item) if isinstance(item, dict) else item
                          for item in value]}
        recorded = _validated(self.source, body_format.recorded,
                              {"file": value} if isinstance(value, str) else value,
                              loc).model_dump()
        body = self._read(recorded["file"], loc)
        items = body.get(key) or []
        if body_format.replayed:
            _replay(items, now)
        by_id = {str(item.get(body_format.id_field)): item
                 for item in items if isinstance(item, dict)}
        for item_id, fields in recorded[key].items():
            if item_id not in by_id:
                self._fail((*loc, key, item_id), f"{key}: no item with {body_format.id_field} "
                                                 f"{item_id} in {recorded['file']}")
            by_id[item_id].update(_merged(by_id[item_id], body_format.encoded(fields)))
        return body

    def _read(self, name: str, loc: Loc) -> dict[str, Any]:
        """A recorded JSON body, relative to the test file; a fresh copy every time."""
        path = self.base / name
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._fail(loc, f"{name}: cannot read a JSON body: {exc}")
        if not isinstance(body, dict):
            self._fail(loc, f"{name}: not an API body (a JSON object)")
        return body

    def _expectation(self, state: State, entries: list[ExpectedSpec], loc: Loc) -> Expectation:
        alerts = []
        for index, entry in enumerate(entries):
            labels = dict(entry.model_extra or {})
            where = (*loc, index)
            name = labels.get("alertname")
            if name is None:
                self.problems.append(self.source.problem(where, "an expected alert needs its "
                                                                "alertname"))
            elif name not in self.alertnames:
                self.problems.append(self.source.problem(
                    (*where, "alertname"), f"no rule named {name} in the rule files"))
            alerts.append(ExpectedAlert(labels, entry.annotations, self.source.line_of(where)))
        return Expectation(state, tuple(alerts), self.source.line_of(loc))

    def _fail(self, loc: Loc, message: str) -> NoReturn:
        raise InvalidInput([self.source.problem(loc, message)])


# Running ---------------------------------------------------------------------------------


def run_test(file: RuleTestFile, test: RuleTest) -> list[Problem]:
    """Feed a test's polls to a fresh evaluator: every unmet expectation and rule error."""
    failures: list[Problem] = []
    reported: set[str] = set()
    with contextlib.closing(Store(Path(":memory:"))) as store:
        tracker = AlertTracker(store, RESOLVED_RETENTION)
        evaluator = ClusterEvaluator(file.cluster, file.unreachable_after, file.rules, tracker)
        for step in test.steps:
            prefix = f'test "{test.name}": at {format_duration(step.at)}: '
            for poll in step.polls:
                for outcome in evaluator.on_poll(poll, test.start + step.at).values():
                    errors = [error for error in outcome.errors if error not in reported]
                    reported.update(errors)
                    failures += [Problem(file.path, step.line, f"{prefix}rule error: {error}")
                                 for error in errors]
            for expectation in step.expectations:
                failures += [Problem(file.path, line, prefix + message)
                             for line, message in expectation.unmet(tracker.alerts())]
    return failures


def run_files(paths: Sequence[Path]) -> int:
    """`crdb-watchdog test`: failures on stdout, invalid files on stderr; 0 when all pass."""
    passed_all = True
    for path in paths:
        try:
            file = load_test_file(path)
        except InvalidInput as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            print(f"{path}: invalid test file")
            passed_all = False
            continue
        results = [run_test(file, test) for test in file.tests]
        for failures in results:
            for failure in failures:
                print(failure)
        failed = sum(1 for failures in results if failures)
        print(f"{path}: {len(results)} test{'s' if len(results) != 1 else ''}, "
              f"{len(results) - failed} passed" + (f", {failed} failed" if failed else ""))
        passed_all = passed_all and not failed
    return 0 if passed_all else 1
