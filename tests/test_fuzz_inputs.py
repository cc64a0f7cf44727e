"""Property tests: whatever a user or a cluster sends, the answer is a located error or a
value, never a traceback."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import fixture_json
from watchdog.config import load_config
from watchdog.rules import load_rule_file
from watchdog.snapshot import PayloadError, parse_events, parse_hot_ranges, parse_nodes
from watchdog.sourcefile import InvalidInput

LOCATED = re.compile(r"^[^\n]+\.yaml(:\d+)?: \S")
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)

CONFIG_KEYS = ["clusters", "name", "urls", "password", "intervals", "nodes", "timeout",
               "channels", "routes", "match", "group_wait", "state", "rules", "unknown"]
RULE_KEYS = ["alert", "source", "each", "when", "for", "severity", "summary", "labels",
             "history", "of", "window", "keep_firing_for", "colour"]


def yaml_like(keys: list[str]) -> st.SearchStrategy[str]:
    """Text that is often YAML of the right shape with the wrong details, sometimes not YAML."""
    scalar = st.sampled_from(["10s", "-1", "x", "[", "{{", "'a'", "nodes", "true", "1e9", "~",
                              "http://127.0.0.1:1", "node.liveness == 'DEAD'", "node.__class__"])
    line = st.tuples(st.integers(0, 3), st.sampled_from(keys), st.sampled_from([": ", ":", " "]),
                     scalar, st.sampled_from(["", "- "]))
    return st.lists(line, max_size=12).map(
        lambda lines: "\n".join(f"{'  ' * depth}{dash}{key}{sep}{value}"
                                for depth, key, sep, value, dash in lines))


RULE_VALUES = {
    "alert": st.sampled_from(["NodeDown", "bad name", "", "X1"]),
    "source": st.sampled_from(["nodes", "health", "events", "hot_ranges", "disks", ""]),
    "each": st.sampled_from(["node", "item", "Node", "1x"]),
    "when": st.sampled_from(["node.liveness == 'DEAD'", "nodes | length > 2", "node.", "((",
                             "nod.x", "node.__class__", "true", "'a' * 10", "history | length"]),
    "for": st.sampled_from(["10s", "0s", "soon", "5", "1h30m"]),
    "keep_firing_for": st.sampled_from(["1m", "-1s"]),
    "severity": st.sampled_from(["critical", "warning", "page"]),
    "summary": st.sampled_from(["{{ node.node_id }}", "{{ oops }}", "{% if %}", "plain"]),
    "labels": st.sampled_from([{"team": "db"}, {"team": 1}, "x"]),
    "history": st.sampled_from([{"of": "started_at", "window": "10m"}, {"of": "uptime"}, 3]),
    "colour": st.just("red"),
}
REQUIRED = ("alert", "source", "when", "summary")
structured_rules = st.lists(st.fixed_dictionaries(
    {key: RULE_VALUES[key] for key in REQUIRED},
    optional={key: value for key, value in RULE_VALUES.items() if key not in REQUIRED}),
    max_size=3).map(lambda rules: yaml.safe_dump({"rules": rules}))


def assert_located(error: InvalidInput) -> None:
    assert error.problems
    for problem in error.problems:
        assert LOCATED.match(str(problem)), str(problem)


@FAST
@given(text=yaml_like(CONFIG_KEYS))
def test_config_loader_gives_a_config_or_located_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except InvalidInput as error:
        assert_located(error)


@FAST
@given(text=yaml_like(RULE_KEYS) | structured_rules)
def test_rule_loader_gives_rules_or_located_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n" + text if text.startswith("  ") else text)
    try:
        load_rule_file(path)
    except InvalidInput as error:
        assert_located(error)


def holds(container: Any, step: Any) -> bool:
    if isinstance(container, dict):
        return step in container
    return isinstance(container, list) and isinstance(step, int) and step < len(container)


def mutate(body: Any, path: list[Any], value: Any) -> Any:
    """The body with the value at `path` (keys and indexes, cut short where absent) replaced."""
    copy = json.loads(json.dumps(body))
    target = copy
    for step in path[:-1]:
        if not holds(target, step):
            return copy
        target = target[step]
    if isinstance(target, dict) or holds(target, path[-1]):
        target[path[-1]] = value
    return copy


NODE_PATHS = st.lists(st.sampled_from(
    ["nodes", 0, 1, "node_id", "liveness_status", "locality", "tiers", "metrics", "sys.uptime",
     "store_metrics", "1", "capacity", "address", "address_field", "started_at", "updated_at"]),
    min_size=1, max_size=5)
PARSERS = {"nodes_3_live.json": parse_nodes, "events.json": parse_events,
           "ranges_hot.json": parse_hot_ranges}


@pytest.mark.parametrize("fixture", sorted(PARSERS))
@FAST
@given(path=NODE_PATHS | st.lists(st.sampled_from(
    ["events", "ranges", 0, "info", "timestamp", "unique_id", "range_id", "replica_node_ids",
     "response_error", "cpu_time_per_second"]), min_size=1, max_size=4),
       value=json_values)
def test_payload_damage_is_a_payload_error_never_a_crash(fixture: str, path: list[Any],
                                                         value: Any) -> None:
    body = mutate(fixture_json(fixture), path, value)
    try:
        PARSERS[fixture](body)
    except PayloadError as error:
        assert str(error)


@FAST
@given(body=json_values)
def test_any_json_body_is_parsed_or_refused(body: Any) -> None:
    for parse in PARSERS.values():
        with contextlib.suppress(PayloadError):
            parse(body)
