"""The rule test runner: what a failure says, what an invalid test file says, exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import DATA
from watchdog.cli import main
from watchdog.ruletest import load_test_file, run_test
from watchdog.sourcefile import InvalidInput

LOST = """\
rules:
  - alert: Lost
    source: nodes
    each: node
    when: node.liveness == 'UNAVAILABLE'
    for: 20s
    summary: "node {{ node.node_id }} lost"
"""
FRESH = """\
rules:
  - alert: Fresh
    source: nodes
    each: node
    when: (now - node.updated_at) | seconds < 15
    summary: "node {{ node.node_id }} wrote its status {{ (now - node.updated_at) | duration }} ago"
  - alert: UpADay
    source: nodes
    each: node
    when: (now - node.started_at) | seconds > 86400
    summary: "node {{ node.node_id }} up for a day"
"""

LOST_2 = "{file: nodes.json, nodes: {2: {liveness_status: 2}}}"
LOST_23 = "{file: nodes.json, nodes: {2: {liveness_status: 2}, 3: {liveness_status: 2}}}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "lost.yaml").write_text(LOST)
    (tmp_path / "fresh.yaml").write_text(FRESH)
    shutil.copy(DATA / "nodes_3_live.json", tmp_path / "nodes.json")
    return tmp_path


def write_test(workdir: Path, steps: str, *, head: str = "rule_files: [lost.yaml]\n",
              name: str = "t") -> Path:
    path = workdir / f"{name}_test.yaml"
    path.write_text(f"{head}tests:\n  - name: {name}\n    steps:\n{steps}")
    return path


def failures(path: Path) -> list[str]:
    file = load_test_file(path)
    return [str(failure) for test in file.tests for failure in run_test(file, test)]


def problems(path: Path) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        load_test_file(path)
    return [str(problem) for problem in caught.value.problems]


FRESH_3 = "[{alertname: Fresh, node_id: 1}, {alertname: Fresh}, {alertname: Fresh}]"
FRESH_RULES = "rule_files: [fresh.yaml]\n"


def test_a_passing_file_exits_0_with_a_summary(workdir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = write_test(workdir, f"""\
      - {{at: 0s, nodes: {LOST_2}, pending: [{{alertname: Lost, node_id: 2}}]}}
      - {{at: 20s, nodes: {LOST_2}, pending: [], firing: [{{alertname: Lost}}]}}
""")
    assert main(["test", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: 1 test, 1 passed\n"


def test_a_missing_and_an_unexpected_alert_name_the_alert_the_time_and_the_line(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_test(workdir, f"""\
      - {{at: 0s, nodes: {LOST_23}}}
      - at: 10s
        nodes: {LOST_23}
        firing:
          - {{alertname: Lost, node_id: 2}}
          - {{alertname: Lost, node_id: 1}}
      - {{at: 20s, nodes: {LOST_23}, firing: [{{alertname: Lost, node_id: 2}}]}}
""")
    assert main(["test", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f'{path}:9: test "t": at 10s: expected firing Lost{{node_id="2"}}: it is pending',
        f'{path}:10: test "t": at 10s: expected firing Lost{{node_id="1"}}: no such alert',
        f'{path}:11: test "t": at 20s: unexpected firing Lost{{region="us-east1", '
        'az="us-east1-d", node_id="3", address="crdb-3.example.internal:26257", '
        'severity="warning"}',
        f"{path}: 1 test, 0 passed, 1 failed",
    ]


def test_label_subsets_are_matched_one_to_one(workdir: Path) -> None:
    enough = write_test(workdir, f"      - {{at: 0s, nodes: nodes.json, firing: {FRESH_3}}}\n",
                        head=FRESH_RULES, name="enough")
    assert failures(enough) == []
    too_many = write_test(workdir, "      - {at: 0s, nodes: nodes.json, firing: [{alertname: "
                                   "Fresh}, {alertname: Fresh}, {alertname: Fresh}, {alertname: "
                                   "Fresh}]}\n", head=FRESH_RULES, name="too_many")
    assert failures(too_many) == [
        f'{too_many}:5: test "too_many": at 0s: expected firing Fresh{{}}: the 3 firing alerts '
        "it matches are all matched by other expected alerts"]


def test_annotations_are_compared_when_given(workdir: Path) -> None:
    path = write_test(workdir, """\
      - at: 0s
        nodes: nodes.json
        firing:
          - alertname: Fresh
            node_id: 1
            annotations: {summary: node 1 wrote its status 4s777ms ago}
          - {alertname: Fresh, node_id: 2, annotations: {summary: node 2 wrote nothing}}
          - {alertname: Fresh, node_id: 3}
""", head=FRESH_RULES)
    assert failures(path) == [
        f'{path}:11: test "t": at 0s: Fresh{{node_id="2"}}: summary is '
        "'node 2 wrote its status 0s ago', expected 'node 2 wrote nothing'"]


def test_recorded_bodies_keep_writing_their_status_and_overrides_are_literal(
        workdir: Path) -> None:
    """nodes.json's newest status write is 09:40:02.75; node 1's is 5 s older."""
    path = write_test(workdir, f"""\
      - {{at: 0s, nodes: nodes.json, firing: {FRESH_3}}}
      - at: 1h
        nodes: {{file: nodes.json, nodes: {{3: {{updated_at: 2024-03-12T10:40:00Z}}}}}}
        firing:
          - alertname: Fresh
            node_id: 1
            annotations: {{summary: "node 1 wrote its status 4s777ms ago"}}
          - {{alertname: Fresh, node_id: 2}}
          - {{alertname: Fresh, node_id: 3}}
      - at: 1h1m
        nodes: {{file: nodes.json, nodes: {{3: {{updated_at: 2024-03-12T10:40:00Z}}}}}}
        firing: [{{alertname: Fresh, node_id: 1}}, {{alertname: Fresh, node_id: 2}}]
""", head=FRESH_RULES)
    assert failures(path) == []


def test_an_explicit_start_sets_the_clock_recorded_times_stay(workdir: Path) -> None:
    """Node 2 started at 00:42 on the 12th; the others later that day."""
    path = write_test(workdir, f"""\
      - at: 0s
        nodes: nodes.json
        firing: {FRESH_3[:-1]}, {{alertname: UpADay, node_id: 2}}]
""", head=FRESH_RULES + "start: 2024-03-13T04:00:00Z\n")
    assert failures(path) == []


def test_a_failed_poll_holds_alerts_and_counts_towards_cluster_unreachable(
        workdir: Path) -> None:
    down = "{error: connection refused, cluster_down: true}"
    path = write_test(workdir, f"""\
      - {{at: 0s, nodes: {LOST_2}}}
      - {{at: 20s, nodes: {down}, pending: [{{alertname: Lost}}], firing: []}}
      - {{at: 30s, nodes: {down}}}
      - {{at: 40s, nodes: {down}, pending: [{{alertname: Lost}}],
         firing: [{{alertname: ClusterUnreachable}}]}}
      - {{at: 50s, nodes: {LOST_2}, pending: [], firing: [{{alertname: Lost}}]}}
""")
    assert failures(path) == []


def test_a_rule_error_fails_the_test_once(workdir: Path) -> None:
    (workdir / "lost.yaml").write_text(LOST + """\
  - alert: Disks
    source: nodes
    each: node
    when: node.metrics['sys.disk.count'] > 0
    summary: x
""")
    path = write_test(workdir, """\
      - {at: 0s, nodes: {file: nodes.json, nodes: {1: {liveness_status: 3}}}}
      - {at: 10s, nodes: nodes.json}
""")
    found = failures(path)
    assert len(found) == 3
    assert found[0].startswith(f'{path}:5: test "t": at 0s: rule error: {workdir}/lost.yaml:8: '
                               "rule Disks on node 1: UndefinedError")


def test_inline_items(workdir: Path) -> None:
    path = write_test(workdir, """\
      - at: 0s
        nodes:
          - {node_id: 7, build_tag: v23.2.2, started_at: 2024-03-12T09:00:00Z, liveness_status: 2}
        pending: [{alertname: Lost, node_id: 7, address: ""}]
""")
    assert failures(path) == []


def test_without_rule_files_the_built_in_pack_is_tested(workdir: Path) -> None:
    path = write_test(workdir, """\
      - {at: 0s, nodes: nodes.json, firing: [], pending: []}
      - {at: 10s, nodes: {error: refused, cluster_down: true}, firing: []}
      - {at: 20s, nodes: {error: refused, cluster_down: true}, firing: []}
      - {at: 30s, nodes: {error: refused, cluster_down: true},
         firing: [{alertname: ClusterUnreachable}]}
""", head="")
    assert {rule.name for rule in load_test_file(path).rules.rules} >= {"NodeLivenessLost",
                                                                        "StoreDiskLow"}
    assert failures(path) == []


@pytest.mark.parametrize(("step", "line", "message"), [
    ("      - {at: 0s, nodez: nodes.json}\n", 4, "tests.0.steps.0.nodez: unknown key"),
    ("      - {at: soon, nodes: nodes.json}\n", 4, "tests.0.steps.0.at: Value error, invalid "
                                                   "duration 'soon'"),
    ("      - {at: 0s, nodes: missing.json}\n", 4, "missing.json: cannot read a JSON body:"),
    ("      - {at: 0s, nodes: {file: nodes.json, nodes: {9: {liveness_status: 1}}}}\n", 4,
     "nodes: no item with node_id 9 in nodes.json"),
    ("      - {at: 0s, nodes: {file: nodes.json, nodes: {2: {liveness_status: DEAD}}}}\n", 4,
     "nodes: nodes[1].liveness_status: expected an integer, got str"),
    ("      - {at: 0s, nodes: {error: refused, cluster_down: maybe}}\n", 4,
     "tests.0.steps.0.nodes.cluster_down: Input should be a valid boolean"),
    ("      - {at: 0s, health: [{url: 'http://a:8080', ok: false}]}\n", 4,
     "health: no URL answers, which the service counts as a failed poll"),
    ("      - {at: 0s, firing: [{alertname: Lots}]}\n", 4, "no rule named Lots in the rule files"),
    ("      - {at: 0s, firing: [{node_id: 2}]}\n", 4, "an expected alert needs its alertname"),
    ("      - {at: 10s}\n      - at: 5s\n", 5, "at: must be later than the step before"),
])
def test_invalid_test_files_say_path_and_line(workdir: Path, step: str, line: int,
                                              message: str) -> None:
    path = write_test(workdir, step)
    [problem] = problems(path)
    assert problem.startswith(f"{path}:{line + 1}: {message}")


def test_problems_of_the_named_rule_files_are_reported_at_their_lines(workdir: Path) -> None:
    (workdir / "lost.yaml").write_text("rules:\n  - alert: X\n    source: nodes\n"
                                       "    when: nod.liveness\n    summary: x\n")
    [problem] = problems(write_test(workdir, "      - {at: 0s}\n"))
    assert problem.startswith(f"{workdir}/lost.yaml:4: when: unknown name nod")


def test_exit_codes_and_invalid_files_on_stderr(workdir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    good = write_test(workdir, "      - {at: 0s, nodes: nodes.json, firing: []}\n", name="good")
    bad = write_test(workdir, f"      - {{at: 0s, nodes: {LOST_2}, firing: [{{alertname: Lost}}]}}"
                              "\n", name="bad")
    invalid = write_test(workdir, "      - {at: 0s, nodez: nodes.json}\n", name="invalid")
    assert main(["test", str(good)]) == 0
    assert main(["test", str(good), str(bad)]) == 1
    capsys.readouterr()
    assert main(["test", str(invalid), str(good)]) == 1
    out, err = capsys.readouterr()
    assert err.startswith(f"{invalid}:5: tests.0.steps.0.nodez: unknown key")
    assert out == f"{invalid}: invalid test file\n{good}: 1 test, 1 passed\n"
    assert main(["test", str(workdir / "nothing.yaml")]) == 1
    with pytest.raises(SystemExit) as usage:
        main(["test"])
    assert usage.value.code == 2
