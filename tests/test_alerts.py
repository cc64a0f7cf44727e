from datetime import UTC, datetime, timedelta

from watchdog.alerts import Alert, Finding, State, Timing, advance
from watchdog.store import Store
from watchdog.tracker import AlertTracker

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LABELS = {"alertname": "NodeLivenessLost", "cluster": "prod", "node_id": "2",
          "severity": "critical"}


def finding(summary: str = "node 2 is UNAVAILABLE") -> Finding:
    return Finding(LABELS, {"summary": summary})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(timing: Timing, conditions: list[bool]) -> list[Alert | None]:
    """Advance one instance once per second through a sequence of condition values."""
    alert, history = None, []
    for second, holds in enumerate(conditions):
        alert = advance(alert, finding() if holds else None, timing, at(second))
        history.append(alert)
    return history


def states(history: list[Alert | None]) -> list[str]:
    return [alert.state.value if alert else "inactive" for alert in history]


def test_condition_with_no_for_fires_at_once() -> None:
    assert states(run(Timing(), [True])) == ["firing"]


def test_pending_until_for_has_elapsed_then_firing() -> None:
    history = run(Timing(for_=timedelta(seconds=2)), [True, True, True, True])
    assert states(history) == ["pending", "pending", "firing", "firing"]
    assert history[-1] is not None and history[-1].fired_at == at(2)
    assert history[-1].active_at == at(0)


def test_pending_that_clears_goes_back_to_inactive_without_a_resolution() -> None:
    assert states(run(Timing(for_=timedelta(seconds=5)), [True, False])) == ["pending",
                                                                            "inactive"]


def test_firing_that_clears_resolves_and_stays_resolved() -> None:
    history = run(Timing(), [True, False, False])
    assert states(history) == ["firing", "resolved", "resolved"]
    assert history[1] is not None and history[1].resolved_at == at(1)
    assert history[2] == history[1]


def test_keep_firing_for_holds_firing_after_the_condition_clears() -> None:
    history = run(Timing(keep_firing_for=timedelta(seconds=2)), [True, False, False, False])
    assert states(history) == ["firing", "firing", "resolved", "resolved"]


def test_resolved_alert_that_holds_again_starts_a_new_episode() -> None:
    history = run(Timing(for_=timedelta(seconds=1)), [True, True, False, True])
    assert states(history) == ["pending", "firing", "resolved", "pending"]
    assert history[-1] is not None and history[-1].active_at == at(3)


def test_instantaneous_alert_fires_once_and_ends_without_resolution() -> None:
    timing = Timing(keep_firing_for=timedelta(seconds=2), instantaneous=True)
    assert states(run(timing, [True, False, False])) == ["firing", "firing", "inactive"]


def test_firing_alert_takes_the_latest_annotations() -> None:
    alert = advance(None, finding("first"), Timing(), at(0))
    alert = advance(alert, finding("second"), Timing(), at(1))
    assert alert is not None and alert.annotations["summary"] == "second"
    assert alert.fired_at == at(0)


def test_tracker_state_survives_a_restart(store: Store) -> None:
    timing = Timing(for_=timedelta(seconds=10))
    tracker = AlertTracker(store, timedelta(minutes=15))
    tracker.apply("NodeLivenessLost", "prod", timing, [finding()], set(), at(0))
    restarted = AlertTracker(store, timedelta(minutes=15))
    [alert] = restarted.alerts()
    assert alert.state is State.PENDING and alert.active_at == at(0)
    restarted.apply("NodeLivenessLost", "prod", timing, [finding()], set(), at(10))
    assert AlertTracker(store, timedelta(minutes=15)).alerts()[0].state is State.FIRING


def test_tracker_holds_undecided_instances(store: Store) -> None:
    tracker = AlertTracker(store, timedelta(minutes=15))
    tracker.apply("NodeLivenessLost", "prod", Timing(), [finding()], set(), at(0))
    tracker.apply("NodeLivenessLost", "prod", Timing(), [], {finding().fingerprint}, at(1))
    assert [a.state for a in tracker.alerts()] == [State.FIRING]


def test_tracker_only_touches_the_given_rule_and_cluster(store: Store) -> None:
    tracker = AlertTracker(store, timedelta(minutes=15))
    tracker.apply("NodeLivenessLost", "prod", Timing(), [finding()], set(), at(0))
    tracker.apply("NodeLivenessLost", "staging", Timing(), [], set(), at(1))
    tracker.apply("NodeDead", "prod", Timing(), [], set(), at(1))
    assert [a.state for a in tracker.alerts()] == [State.FIRING]


def test_tracker_forgets_resolved_alerts_after_retention(store: Store) -> None:
    tracker = AlertTracker(store, timedelta(seconds=30))
    tracker.apply("NodeLivenessLost", "prod", Timing(), [finding()], set(), at(0))
    tracker.apply("NodeLivenessLost", "prod", Timing(), [], set(), at(1))
    tracker.apply("NodeLivenessLost", "prod", Timing(), [], set(), at(20))
    assert [a.state for a in tracker.alerts()] == [State.RESOLVED]
    tracker.apply("NodeLivenessLost", "prod", Timing(), [], set(), at(40))
    assert tracker.alerts() == []
    assert AlertTracker(store, timedelta(seconds=30)).alerts() == []
