"""The built-in rule pack's own rule tests (rules/tests/*_test.yaml), one pytest test each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from watchdog.alerts import State
from watchdog.resources import builtin_dir
from watchdog.rules import load_rules
from watchdog.ruletest import RuleTest, RuleTestFile, load_test_file, run_test

PACK_TESTS = sorted((builtin_dir("rules") / "tests").glob("*_test.yaml"))
FILES = [load_test_file(path) for path in PACK_TESTS]


def _cases() -> Iterator[object]:
    for file in FILES:
        for test in file.tests:
            yield pytest.param(file, test, id=f"{file.path.rsplit('/', 1)[-1]}: {test.name}")


@pytest.mark.parametrize(("file", "test"), list(_cases()))
def test_rule_test_passes(file: RuleTestFile, test: RuleTest) -> None:
    failures = run_test(file, test)
    assert not failures, "\n".join(str(failure) for failure in failures)


def test_every_rule_of_the_pack_is_expected_to_fire_somewhere() -> None:
    expected = {alert.labels.get("alertname")
                for file in FILES for test in file.tests for step in test.steps
                for expectation in step.expectations if expectation.state is State.FIRING
                for alert in expectation.alerts}
    assert {rule.name for rule in load_rules(None).rules} <= expected
