"""The rule engine: load and validate rule files, compile expressions once, evaluate snapshots.

A rule's `when` is a Jinja2 expression run in the rule sandbox. Per-item rules are compiled
into one template that loops over every item, so a round over 1,000 nodes costs one render
call instead of 1,000 (the per-call overhead of a compiled Jinja2 expression dominates its
cost). If that loop fails on some item, the items are evaluated one by one to find which,
so one node's odd data never hides another node's alert.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

from jinja2 import Template, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.parser import Parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from watchdog.alerts import Finding, Timing, fingerprint
from watchdog.config import Source
from watchdog.durations import Duration
from watchdog.resources import builtin_dir
from watchdog.sandbox import make_environment
from watchdog.snapshot import Event, HealthItem, HotRange, Item, Node, StoreStatus
from watchdog.sourcefile import InvalidInput, Problem, SourceFile, load_yaml

Severity = Literal["critical", "warning", "info"]
ANNOTATIONS = ("summary", "description", "value", "runbook_url")
EVENT_HOLD = timedelta(minutes=5)
"""How long an event's alert stays firing (for grouping and routing) before it ends."""
RESERVED_LABELS = frozenset({"alertname", "cluster", "severity"})
RuleSource = Literal["health", "nodes", "stores", "events", "hot_ranges"]
RULE_SOURCES: tuple[RuleSource, ...] = ("health", "nodes", "stores", "events", "hot_ranges")
POLLED_AS: dict[RuleSource, Source] = {"health": "health", "nodes": "nodes", "stores": "nodes",
                                       "events": "events", "hot_ranges": "hot_ranges"}
"""What is polled for each source: `stores` are the `store_metrics` of the nodes poll."""
ITEM_TYPES: dict[RuleSource, type] = {"nodes": Node, "stores": StoreStatus, "health": HealthItem,
                                      "events": Event, "hot_ranges": HotRange}
_FIELDS = {cls: frozenset(f.name for f in fields(cls)) for cls in ITEM_TYPES.values()}
_ENV = make_environment(_FIELDS)


class HistorySpec(BaseModel):
    """`history: {of: started_at, window: 10m}`: the values a field took recently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    of: str = Field(pattern=r"^[a-z_]+$")
    window: Duration


class RuleSpec(BaseModel):
    """One rule as written in a rule file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    alert: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    source: RuleSource
    each: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]*$")
    when: str
    for_: Duration = Field(default=timedelta(0), alias="for")
    keep_firing_for: Duration = timedelta(0)
    history: HistorySpec | None = None
    severity: Severity = "warning"
    labels: dict[str, str] = {}
    summary: str
    description: str = ""
    value: str = ""
    """The measured value a page shows beside the summary, e.g. `12% free`."""
    runbook_url: str = ""


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[dict[str, Any]]


@dataclass(frozen=True)
class EvalContext:
    """What one evaluation sees: the cluster, the time, and the latest data of each source.

    The names and per-item bindings are built once and shared by every rule of a round.
    """

    cluster: str
    now: datetime
    data: Mapping[RuleSource, Sequence[Item]]
    previous: Mapping[str, Item] = field(default_factory=dict)
    _bindings: dict[RuleSource, list[Binding]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @cached_property
    def names(self) -> dict[str, Any]:
        names: dict[str, Any] = {source: list(self.data.get(source, ()))
                                 for source in RULE_SOURCES}
        names.update(cluster=self.cluster, now=self.now)
        return names

    def bindings(self, source: RuleSource) -> list[Binding]:
        if source not in self._bindings:
            self._bindings[source] = [Binding(index, item, self.previous.get(item.key), None)
                                      for index, item in enumerate(self.data.get(source, ()))]
        return self._bindings[source]


class Binding(NamedTuple):
    """What one evaluation of a per-item rule sees besides the source lists."""

    position: int
    item: Item | None
    previous: Item | None
    history: Sequence[Any] | None


CLUSTER_BINDING = Binding(0, None, None, None)
"""The one evaluation of a rule without `each`."""


@dataclass(frozen=True)
class RuleResult:
    """The instances whose condition holds, and those the rule could not decide this round."""

    findings: list[Finding]
    undecided: set[str]
    errors: list[str]


@dataclass
class ValueHistory:
    """The distinct values one field of each item took within a window (for `history:`).

    Only changes are kept, so watching restarts (`started_at`) of 1,000 nodes for ten
    minutes costs a few values per node, not ten minutes of snapshots.
    """

    spec: HistorySpec
    _seen: dict[str, list[tuple[Any, datetime]]] = field(default_factory=dict)

    def observe(self, items: Sequence[Item], now: datetime) -> dict[str, list[Any]]:
        """Record this round's values; each item's values within the window, oldest first.

        A value counts while it was current: from when it was first seen until the next
        value was (or until now).
        """
        horizon = now - self.spec.window
        current: dict[str, list[tuple[Any, datetime]]] = {}
        for item in items:
            value = getattr(item, self.spec.of)
            past = self._seen.get(item.key, [])
            if not past or past[-1][0] != value:
                past = [*past, (value, now)]
            ends = [since for _, since in past[1:]] + [now]
            current[item.key] = [entry for entry, end in zip(past, ends, strict=True)
                                 if end >= horizon]
        self._seen = current
        return {key: [value for value, _ in entries] for key, entries in current.items()}


@dataclass(frozen=True)
class Rule:
    spec: RuleSpec
    origin: str
    _condition: Template = field(repr=False)
    _annotations: Mapping[str, Template] = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.alert

    @property
    def source(self) -> RuleSource:
        return self.spec.source

    @property
    def timing(self) -> Timing:
        """Event rules are instantaneous: each new event notifies once and never resolves."""
        if self.source == "events":
            return Timing(keep_firing_for=max(self.spec.keep_firing_for, EVENT_HOLD),
                          instantaneous=True)
        return Timing(self.spec.for_, self.spec.keep_firing_for)

    def evaluate(self, ctx: EvalContext,
                 history: Mapping[str, Sequence[Any]] | None = None) -> RuleResult:
        """Evaluate the rule over the context's items; never raises for bad data."""
        bindings = ctx.bindings(self.source) if self.spec.each else [CLUSTER_BINDING]
        if history is not None:
            bindings = [b._replace(history=history.get(b.item.key)) if b.item else b
                        for b in bindings]
        names = ctx.names
        errors: list[str] = []
        try:
            matched = self._matching(bindings, names)
            undecided: list[int] = []
        except Exception as exc:  # a failing user expression is a rule error, not a crash
            matched, undecided = self._matching_one_by_one(bindings, names, errors, exc)
        findings = []
        for index in matched:
            try:
                findings.append(self._finding(bindings[index], names))
            except Exception as exc:
                errors.append(self._describe(bindings[index].item, exc))
                undecided.append(index)
        held = {fingerprint(self.labels(ctx.cluster, bindings[i].item)) for i in undecided}
        return RuleResult(findings, held, errors)

    def labels(self, cluster: str, item: Item | None) -> dict[str, str]:
        """An instance's identity: name, cluster, severity, the item's labels, the rule's."""
        labels = {**item_labels(item), **self.spec.labels} if item else dict(self.spec.labels)
        labels.update(alertname=self.name, cluster=cluster, severity=self.spec.severity)
        return labels

    def _matching(self, bindings: Sequence[Binding], names: Mapping[str, Any]) -> list[int]:
        output = self._condition.render(__bindings=bindings, **names)
        return [int(index) for index in output.split(",") if index]

    def _matching_one_by_one(self, bindings: Sequence[Binding], names: Mapping[str, Any],
                             errors: list[str],
                             batch_error: Exception) -> tuple[list[int], list[int]]:
        matched, undecided = [], []
        for index, binding in enumerate(bindings):
            try:
                if self._matching([binding._replace(position=index)], names):
                    matched.append(index)
            except Exception as exc:
                errors.append(self._describe(binding.item, exc))
                undecided.append(index)
        if not undecided:
            errors.append(self._describe(None, batch_error))
        return matched, undecided

    def _finding(self, binding: Binding, names: Mapping[str, Any]) -> Finding:
        bound = {**names, "previous": binding.previous, "history": binding.history}
        if self.spec.each:
            bound[self.spec.each] = binding.item
        annotations = {key: template.render(bound) for key, template in self._annotations.items()}
        return Finding(self.labels(str(names["cluster"]), binding.item), annotations)

    def _describe(self, item: Item | None, exc: Exception) -> str:
        where = f" on {self.spec.each} {item.key}" if item and self.spec.each else ""
        return f"{self.origin}: rule {self.name}{where}: {type(exc).__name__}: {exc}"


def item_labels(item: Item) -> dict[str, str]:
    """Labels that say where an item is: node, address and locality; URL; range; event."""
    match item:
        case Node():
            labels = {k: v for k, v in item.locality.items() if k not in RESERVED_LABELS}
            labels.update(node_id=str(item.node_id), address=item.address)
            return labels
        case StoreStatus():
            return {**item_labels(item.node), "store_id": item.store_id}
        case HealthItem():
            labels = {"url": item.url}
            if item.node_id is not None:
                labels["node_id"] = str(item.node_id)
            return labels
        case HotRange():
            return {"range_id": str(item.range_id), "node_id": str(item.leaseholder_node_id)}
        case Event():
            return {"event_id": item.unique_id, "event_type": item.event_type}
    raise TypeError(f"not an item: {item!r}")


@dataclass(frozen=True)
class RuleSet:
    rules: list[Rule]

    @property
    def sources(self) -> set[Source]:
        """The sources to poll: those some rule uses (`stores` come from `nodes`)."""
        return {POLLED_AS[rule.source] for rule in self.rules}

    def for_source(self, source: RuleSource) -> list[Rule]:
        return [rule for rule in self.rules if rule.source == source]


def rule_paths(patterns: Sequence[str] | None) -> list[Path]:
    """The files named by `rules:` paths and globs, or the built-in pack without a `rules:`."""
    if patterns is None:
        return sorted(builtin_dir("rules").glob("*.yaml"))
    paths: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        paths.extend(Path(match) for match in matches)
    return paths


def load_rules(patterns: Sequence[str] | None) -> RuleSet:
    """Load and compile every rule file; InvalidInput lists every problem in every file."""
    rules: list[Rule] = []
    problems: list[Problem] = []
    for path in rule_paths(patterns):
        try:
            rules.extend(load_rule_file(path))
        except InvalidInput as exc:
            problems.extend(exc.problems)
    seen: dict[str, str] = {}
    for rule in rules:
        if rule.name in seen:
            problems.append(Problem(rule.origin.rsplit(":", 1)[0], _line(rule.origin),
                                    f"rule {rule.name} is also defined at {seen[rule.name]}"))
        seen.setdefault(rule.name, rule.origin)
    if problems:
        raise InvalidInput(problems)
    return RuleSet(rules)


def load_rule_file(path: Path) -> list[Rule]:
    source = load_yaml(path)
    try:
        entries = RuleFile.model_validate(source.data).rules
    except ValidationError as exc:
        raise InvalidInput(source.validation_problems(exc)) from None
    rules, problems = [], []
    for index, entry in enumerate(entries):
        try:
            rules.append(compile_rule(source, index, entry))
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)
    return rules


def compile_rule(source: SourceFile, index: int, entry: dict[str, Any]) -> Rule:
    loc = ("rules", index)
    try:
        spec = RuleSpec.model_validate(entry)
    except ValidationError as exc:
        raise InvalidInput(source.validation_problems(exc, loc)) from None
    known = {*RULE_SOURCES, "cluster", "now", "previous", "history", *_ENV.globals}
    if spec.each:
        known.add(spec.each)
    problems = _history_problems(source, loc, spec)
    condition = None
    try:
        condition = _compile_condition(spec)
        problems += _unknown_names(source, (*loc, "when"), _condition_source(spec), known)
    except TemplateError as exc:
        problems.append(_template_problem(source, (*loc, "when"), exc))
    annotations = {}
    for key in ANNOTATIONS:
        text = getattr(spec, key)
        if not text:
            continue
        try:
            annotations[key] = _ENV.from_string(text)
            problems += _unknown_names(source, (*loc, key), text, known)
        except TemplateError as exc:
            problems.append(_template_problem(source, (*loc, key), exc))
    if problems or condition is None:
        raise InvalidInput(problems)
    origin = f"{source.path}:{source.line_of(loc) or 1}"
    return Rule(spec, origin, condition, annotations)


def _history_problems(source: SourceFile, loc: tuple[str | int, ...],
                      spec: RuleSpec) -> list[Problem]:
    if spec.history is None:
        return []
    where = (*loc, "history")
    if not spec.each:
        return [source.problem(where, "history: needs `each` (it is kept per item)")]
    known = _FIELDS[ITEM_TYPES[spec.source]] - {"raw"}
    if spec.history.of not in known:
        return [source.problem(where, f"history.of: {spec.history.of!r} is not a field of "
                                      f"{spec.source} items: {', '.join(sorted(known))}")]
    return []


def _unknown_names(source: SourceFile, loc: tuple[str | int, ...], text: str,
                   known: set[str]) -> list[Problem]:
    """A misspelt name is caught by `check`, not discovered as an error at 3 a.m."""
    unknown = meta.find_undeclared_variables(_ENV.parse(text)) - known - {"__bindings", "__index"}
    if not unknown:
        return []
    names = ", ".join(sorted(known - set(_ENV.globals)))
    return [source.problem(loc, f"{loc[-1]}: unknown name {', '.join(sorted(unknown))}; "
                                f"known: {names}")]


def _condition_source(spec: RuleSpec) -> str:
    """Only for name checking: the compiled loop is built from the parsed AST, not this text."""
    target = f"__index, {spec.each or '_'}, previous, history"
    return f"{{% for {target} in __bindings %}}{{{{ {spec.when} }}}}{{% endfor %}}"


def _compile_condition(spec: RuleSpec) -> Template:
    """`{% for __index, each, previous, history in __bindings %}{% if when %}{{ __index }},`.

    Emitting our own index rather than `loop.index0` keeps Jinja2 from building a loop
    context object per item.
    """
    parser = Parser(_ENV, spec.when, state="variable")
    test = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError("unexpected text after the expression",
                                  parser.stream.current.lineno)
    names = ("__index", spec.each or "_", "previous", "history")
    target = nodes.Tuple([nodes.Name(name, "store") for name in names], "store")
    emit = nodes.Output([nodes.Name("__index", "load"), nodes.TemplateData(",")])
    loop = nodes.For(target, nodes.Name("__bindings", "load"),
                     [nodes.If(test, [emit], [], [])], [], None, False)
    template = nodes.Template([loop], lineno=1)
    template.set_environment(_ENV)
    return _ENV.from_string(template)


def _template_problem(source: SourceFile, loc: tuple[str | int, ...],
                      exc: TemplateError) -> Problem:
    line = source.line_of(loc) or 1
    offset = getattr(exc, "lineno", None) or 1
    return Problem(source.path, line + offset - 1, f"{loc[-1]}: {exc.message or exc}")


def _line(origin: str) -> int | None:
    tail = origin.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def evaluate_all(rules: Iterable[Rule], ctx: EvalContext) -> dict[str, RuleResult]:
    return {rule.name: rule.evaluate(ctx) for rule in rules}
