"""One cluster over time: each poll's rules evaluated, alert states advanced.

The service feeds it what it polls; rule unit tests (`crdb-watchdog test`) feed it recorded
responses. Both go through this one class, so a rule test exercises exactly what runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from watchdog.alerts import Alert, Finding, Timing
from watchdog.poller import PollResult
from watchdog.rules import EvalContext, RuleResult, RuleSet, RuleSource, ValueHistory
from watchdog.snapshot import Item, Node, stores_of
from watchdog.tracker import AlertTracker

log = logging.getLogger(__name__)

CLUSTER_UNREACHABLE = "ClusterUnreachable"


class ClusterEvaluator:
    def __init__(self, cluster: str, unreachable_after: int, rules: RuleSet,
                 tracker: AlertTracker) -> None:
        self.cluster = cluster
        self.unreachable_after = unreachable_after
        self.rules = rules
        self.tracker = tracker
        self.latest: dict[RuleSource, list[Item]] = {}
        self.previous: dict[RuleSource, dict[str, Item]] = {}
        self.failed_polls = 0
        self.rule_errors: dict[str, list[str]] = {}
        self.histories = {rule.name: ValueHistory(rule.spec.history)
                          for rule in rules.rules if rule.spec.history}

    def with_rules(self, rules: RuleSet) -> ClusterEvaluator:
        """An evaluator of new rules (a reload) that goes on from where this one was: the last
        snapshots (for `previous`), the count towards ClusterUnreachable, and the histories of
        rules whose `history:` did not change."""
        new = ClusterEvaluator(self.cluster, self.unreachable_after, rules, self.tracker)
        new.latest, new.previous, new.failed_polls = self.latest, self.previous, self.failed_polls
        before = {rule.name: rule.spec.history for rule in self.rules.rules}
        for rule in rules.rules:
            if rule.name in self.histories and before.get(rule.name) == rule.spec.history:
                new.histories[rule.name] = self.histories[rule.name]
        return new

    def on_poll(self, result: PollResult, now: datetime) -> dict[str, RuleResult]:
        """Evaluate a successful poll's rules; a failed poll leaves its alerts as they are."""
        outcomes = self._evaluate(result, now) if result.ok else {}
        self._track_reachability(result, now)
        return outcomes

    def _evaluate(self, result: PollResult, now: datetime) -> dict[str, RuleResult]:
        """Rules of the polled source and of those derived from it (`stores` from `nodes`)."""
        polled: dict[RuleSource, list[Item]] = {result.source: list(result.items)}
        if result.source == "nodes":
            polled["stores"] = list(stores_of([n for n in result.items if isinstance(n, Node)]))
        self.latest.update(polled)
        outcomes: dict[str, RuleResult] = {}
        for source, items in polled.items():
            outcomes.update(self._evaluate_source(source, items, now, result.unreported))
        return outcomes

    def _evaluate_source(self, source: RuleSource, items: list[Item], now: datetime,
                         unreported: Mapping[int, str]) -> dict[str, RuleResult]:
        ctx = EvalContext(self.cluster, now, self.latest, self.previous.get(source, {}))
        outcomes = {}
        for rule in self.rules.for_source(source):
            history = self.histories.get(rule.name)
            seen = history.observe(items, now) if history else None
            outcome = outcomes[rule.name] = rule.evaluate(ctx, seen)
            self._report_rule_errors(rule.name, outcome.errors)
            held = outcome.undecided | self._of_nodes(rule.name, unreported)
            self._apply(rule.name, rule.timing, outcome.findings, held, now)
        if source != "events":
            self.previous[source] = {item.key: item for item in items}
        return outcomes

    def _of_nodes(self, rule: str, node_ids: Mapping[int, str]) -> set[str]:
        """This rule's alerts about the given nodes (to hold while those nodes are unheard)."""
        if not node_ids:
            return set()
        names = {str(node_id) for node_id in node_ids}
        return {alert.fingerprint for alert in self.tracker.alerts()
                if alert.name == rule and alert.cluster == self.cluster
                and alert.labels.get("node_id") in names}

    def _track_reachability(self, result: PollResult, now: datetime) -> None:
        """ClusterUnreachable: every URL failed `unreachable_after` polls in a row."""
        if result.cluster_down:
            self.failed_polls += 1
        elif result.ok:
            self.failed_polls = 0
        else:
            return
        findings = []
        if self.failed_polls >= self.unreachable_after:
            labels = {"alertname": CLUSTER_UNREACHABLE, "cluster": self.cluster,
                      "severity": "critical"}
            summary = (f"Cluster {self.cluster}: no node answered {self.failed_polls} polls "
                       f"in a row ({result.error})")
            findings.append(Finding(labels, {"summary": summary}))
        self._apply(CLUSTER_UNREACHABLE, Timing(), findings, set(), now)

    def _apply(self, rule: str, timing: Timing, findings: list[Finding], undecided: set[str],
               now: datetime) -> None:
        changed = self.tracker.apply(rule, self.cluster, timing, findings, undecided, now)
        _log_transitions(changed)

    def _report_rule_errors(self, rule: str, errors: list[str]) -> None:
        """Log a rule's errors when they start or change, and when they stop: not every round."""
        previous = self.rule_errors.get(rule, [])
        if errors != previous:
            if errors:
                log.error("cluster %s: %s", self.cluster, "; ".join(errors))
            else:
                log.info("cluster %s: rule %s evaluates again", self.cluster, rule)
        if errors:
            self.rule_errors[rule] = errors
        else:
            self.rule_errors.pop(rule, None)


def _log_transitions(alerts: list[Alert]) -> None:
    for alert in alerts:
        log.info("alert %s %s: %s", alert.name, alert.state.value,
                 alert.annotations.get("summary", ""))
