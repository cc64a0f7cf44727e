"""Silences and inhibition in the dispatcher: a muted alert sends nothing; its resolution goes
out only if it was paged before; when the muting ends, a still firing alert pages again."""

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import NOTIFY_T0 as T0
from watchdog.alerts import Alert, State
from watchdog.config import Config
from watchdog.notify import Dispatcher, Renderer
from watchdog.notify.inhibit import BUILTIN, inhibited
from watchdog.notify.silences import new_silence, parse_matcher
from watchdog.store import Store

MakeAlert = Callable[..., Alert]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def dispatcher(store: Store, **extra: Any) -> Dispatcher:
    config = Config.model_validate({
        "clusters": [{"name": "prod", "urls": ["http://crdb-1:8080"]}],
        "channels": {"oncall": {"urls": ["json://127.0.0.1:9/hook"]}},
        "routes": [{"channels": ["oncall"], "group_by": ["cluster", "alertname", "node_id"],
                    "group_interval": "1m", "repeat_interval": "1h"}],
        **extra,
    })
    return Dispatcher(config, store, Renderer())


def titles(entries: list[Any]) -> list[str]:
    return [entry.title for entry in entries]


def resolved(alert: Alert, seconds: float) -> Alert:
    return Alert(alert.labels, alert.annotations, State.RESOLVED, alert.active_at,
                 alert.last_true_at, alert.fired_at, at(seconds))


def silence(store: Store, *matchers: str, seconds: float, start: float = 0) -> str:
    made = new_silence([parse_matcher(m) for m in matchers], timedelta(seconds=seconds),
                       "maintenance", "alice", at(start))
    store.add_silence(made, forget_ended_before=at(start))
    return made.id


# Inhibition rules, alone -------------------------------------------------------------------


def test_cluster_unreachable_mutes_the_other_alerts_of_its_cluster_only(
        make_alert: MakeAlert) -> None:
    unreachable = make_alert("ClusterUnreachable", node_id=None)
    same_cluster = [make_alert(node_id="1"), make_alert("ClockOffsetHigh", node_id="2")]
    elsewhere = make_alert(cluster="staging")
    muted = inhibited([unreachable, *same_cluster, elsewhere], BUILTIN)
    assert muted == {alert.fingerprint for alert in same_cluster}


def test_an_alert_on_both_sides_never_mutes_itself_nor_its_like(make_alert: MakeAlert) -> None:
    one = make_alert("ClusterUnreachable", node_id=None)
    two = make_alert("ClusterUnreachable", node_id=None, url="http://crdb-2:8080")
    assert inhibited([one, two], BUILTIN) == set()


def test_liveness_lost_mutes_unreachable_and_not_ready_of_the_same_node(
        make_alert: MakeAlert) -> None:
    lost = make_alert(node_id="2")
    same = [make_alert("NodeUnreachable", node_id="2"), make_alert("NodeNotReady", node_id="2")]
    other_node = make_alert("NodeUnreachable", node_id="3")
    other_alert = make_alert("NodeDead", node_id="2")
    assert inhibited([lost, *same, other_node, other_alert], BUILTIN) == {
        alert.fingerprint for alert in same}


def test_only_firing_alerts_mute_and_are_muted(make_alert: MakeAlert) -> None:
    pending = make_alert("ClusterUnreachable", node_id=None, state=State.PENDING)
    assert inhibited([pending, make_alert()], BUILTIN) == set()
    unreachable = make_alert("ClusterUnreachable", node_id=None)
    gone = make_alert(state=State.RESOLVED, resolved_at=T0)
    assert inhibited([unreachable, gone], BUILTIN) == set()


def test_configured_rules_match_by_regex_and_equal_labels(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store, inhibit=[{
        "source": {"match": {"alertname": "NodeDead"}},
        "target": {"match_re": {"alertname": "Ranges.*"}},
        "equal": ["cluster"]}])
    dead = make_alert("NodeDead", node_id="1")
    under = make_alert("RangesUnderreplicated", node_id="2", severity="warning")
    elsewhere = make_alert("RangesUnderreplicated", node_id="2", cluster="staging")
    entries = notifier.dispatch([dead, under, elsewhere], at(0))
    assert sorted((e.title, "cluster: staging" in e.body) for e in entries) == [
        ("[FIRING:1] NodeDead", False), ("[FIRING:1] RangesUnderreplicated", True)]


# Inhibition in the dispatcher ----------------------------------------------------------------


def test_an_inhibited_alert_sends_nothing_nor_its_resolution(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store)
    unreachable = make_alert("ClusterUnreachable", node_id=None)
    lost = make_alert(node_id="1")
    assert titles(notifier.dispatch([unreachable, lost], at(0))) == [
        "[FIRING:1] ClusterUnreachable"]
    assert notifier.dispatch([unreachable, resolved(lost, 30)], at(30)) == []
    assert titles(notifier.dispatch([resolved(unreachable, 90), resolved(lost, 30)],
                                    at(90))) == ["[RESOLVED:1] ClusterUnreachable"]


def test_an_alert_paged_then_inhibited_has_its_resolution_sent(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store)
    unreachable = make_alert("NodeUnreachable", node_id="2")
    assert titles(notifier.dispatch([unreachable], at(0))) == ["[FIRING:1] NodeUnreachable"]
    lost = make_alert(node_id="2", fired_at=at(10))
    assert titles(notifier.dispatch([unreachable, lost], at(10))) == [
        "[FIRING:1] NodeLivenessLost"]
    assert notifier.dispatch([unreachable, lost], at(200)) == []
    entries = notifier.dispatch([resolved(unreachable, 300), resolved(lost, 300)], at(300))
    assert sorted(titles(entries)) == ["[RESOLVED:1] NodeLivenessLost",
                                       "[RESOLVED:1] NodeUnreachable"]


def test_an_alert_still_firing_when_its_inhibitor_resolves_pages_again(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store)
    not_ready = make_alert("NodeNotReady", node_id="2")
    assert notifier.dispatch([not_ready], at(0))
    lost = make_alert(node_id="2", fired_at=at(10))
    notifier.dispatch([not_ready, lost], at(10))
    entries = notifier.dispatch([not_ready, resolved(lost, 100)], at(100))
    assert sorted(titles(entries)) == ["[FIRING:1] NodeNotReady",
                                       "[RESOLVED:1] NodeLivenessLost"]


# Silences in the dispatcher -------------------------------------------------------------------


def test_a_silenced_alert_sends_nothing_until_the_silence_ends(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store)
    silence(store, "alertname=NodeLivenessLost", "node_id=~1|2", seconds=60)
    one, two, three = (make_alert(node_id=n) for n in "123")
    assert titles(notifier.dispatch([one, two, three], at(0))) == [
        "[FIRING:1] NodeLivenessLost"]
    assert "Node 3" in store.outbox()[0].body
    assert notifier.dispatch([one, two, three], at(59)) == []
    entries = notifier.dispatch([one, two, three], at(60))
    assert [e.body.split(":", 1)[1].split("\n")[0] for e in entries] == [
        " Node 1 is UNAVAILABLE", " Node 2 is UNAVAILABLE"]


def test_an_expired_silence_lets_a_paged_alert_that_still_fires_page_again(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store)
    alert = make_alert()
    assert notifier.dispatch([alert], at(0))
    silence_id = silence(store, "cluster=prod", seconds=7200, start=10)
    assert notifier.dispatch([alert], at(10)) == []
    assert notifier.dispatch([alert], at(600)) == []
    assert store.expire_silence(silence_id, at(700))
    assert titles(notifier.dispatch([alert], at(700))) == ["[FIRING:1] NodeLivenessLost"]
    assert notifier.dispatch([alert], at(800)) == []


def test_a_silence_does_not_hold_back_a_resolution_that_was_paged(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store)
    alert = make_alert()
    notifier.dispatch([alert], at(0))
    silence(store, "alertname=NodeLivenessLost", seconds=3600, start=10)
    notifier.dispatch([alert], at(10))
    assert titles(notifier.dispatch([resolved(alert, 100)], at(100))) == [
        "[RESOLVED:1] NodeLivenessLost"]


def test_a_silence_added_while_running_applies_at_the_next_pass(
        tmp_path: Path, make_alert: MakeAlert) -> None:
    """The service and the CLI each have their own connection to the state file."""
    service, cli = Store(tmp_path / "state.db"), Store(tmp_path / "state.db")
    try:
        notifier = dispatcher(service)
        silence(cli, "node_id=1", seconds=60)
        assert notifier.dispatch([make_alert(node_id="1")], at(1)) == []
        assert notifier.dispatch([make_alert(node_id="2")], at(1))
    finally:
        service.close()
        cli.close()
