from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import NOTIFY_T0 as T0
from watchdog.alerts import Alert, State
from watchdog.config import Config
from watchdog.notify import Dispatcher, Notice, Renderer, notify_type
from watchdog.store import Store

MakeAlert = Callable[..., Alert]


def config(**route: Any) -> Config:
    return Config.model_validate({
        "clusters": [{"name": "prod", "urls": ["http://crdb-1:8080"]}],
        "channels": {
            "oncall": {"urls": ["json://127.0.0.1:9/hook", "mailto://127.0.0.1:9?to=a@b.c"]},
            "chat": {"urls": ["json://127.0.0.1:9/chat"], "format": "markdown"},
        },
        "routes": [{"channels": ["oncall"], "group_wait": "0s", "group_interval": "1m",
                    "repeat_interval": "1h", **route}],
    })


def dispatcher(store: Store, **route: Any) -> Dispatcher:
    return Dispatcher(config(**route), store, Renderer(clusters={"prod": "http://crdb-1:8080"}))


def resolved(alert: Alert, seconds: float) -> Alert:
    return Alert(alert.labels, alert.annotations, State.RESOLVED, alert.active_at,
                 alert.last_true_at, alert.fired_at, T0 + timedelta(seconds=seconds))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_two_alerts_in_one_group_make_one_notification_per_url(
        store: Store, make_alert: MakeAlert) -> None:
    alerts = [make_alert(node_id="1"), make_alert(node_id="2")]
    entries = dispatcher(store).dispatch(alerts, at(0))
    assert [e.url for e in entries] == ["json://127.0.0.1:9/hook",
                                        "mailto://127.0.0.1:9?to=a@b.c"]
    assert {e.title for e in entries} == {"[FIRING:2] NodeLivenessLost"}
    assert all("Node 1 is UNAVAILABLE" in e.body and "Node 2 is UNAVAILABLE" in e.body
               for e in entries)
    assert {(e.notify_type, e.body_format, e.channel) for e in entries} == {
        ("failure", "text", "oncall")}
    assert store.outbox() == [replace(e, id=i) for i, e in enumerate(entries, start=1)]


def test_nothing_new_sends_nothing_until_repeat_interval(
        store: Store, make_alert: MakeAlert) -> None:
    alerts = [make_alert()]
    notifier = dispatcher(store)
    assert notifier.dispatch(alerts, at(0))
    assert notifier.dispatch(alerts, at(1)) == []
    assert notifier.dispatch(alerts, at(120)) == []
    assert notifier.dispatch(alerts, at(3599)) == []
    repeated = notifier.dispatch(alerts, at(3600))
    assert [e.title for e in repeated] == ["[FIRING:1] NodeLivenessLost"] * 2
    assert notifier.dispatch(alerts, at(3601)) == []


def test_group_wait_delays_the_first_notification(store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store, group_wait="30s")
    first = [make_alert(node_id="1")]
    assert notifier.dispatch(first, at(0)) == []
    both = [*first, make_alert(node_id="2", fired_at=at(10))]
    assert notifier.dispatch(both, at(29)) == []
    assert {e.title for e in notifier.dispatch(both, at(30))} == {"[FIRING:2] NodeLivenessLost"}


def test_group_interval_batches_alerts_joining_a_notified_group(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store)
    first = [make_alert(node_id="1")]
    notifier.dispatch(first, at(0))
    both = [*first, make_alert(node_id="2", fired_at=at(10))]
    assert notifier.dispatch(both, at(10)) == []
    assert notifier.dispatch(both, at(59)) == []
    assert {e.title for e in notifier.dispatch(both, at(60))} == {"[FIRING:2] NodeLivenessLost"}


def test_a_group_that_reappears_waits_group_wait_not_group_interval(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store, group_interval="5m")
    old, new = make_alert(node_id="1"), make_alert(node_id="2", fired_at=at(30))
    assert notifier.dispatch([old], at(0))
    assert notifier.dispatch([resolved(old, 10)], at(299)) == []
    assert notifier.dispatch([resolved(old, 10)], at(300))
    assert notifier.dispatch([], at(310)) == []
    assert {e.title for e in notifier.dispatch([new], at(320))} == {
        "[FIRING:1] NodeLivenessLost"}


def test_resolution_is_sent_once(store: Store, make_alert: MakeAlert) -> None:
    alert = make_alert()
    notifier = dispatcher(store)
    notifier.dispatch([alert], at(0))
    entries = notifier.dispatch([resolved(alert, 90)], at(90))
    assert {(e.title, e.notify_type) for e in entries} == {("[RESOLVED:1] NodeLivenessLost",
                                                            "success")}
    assert notifier.dispatch([resolved(alert, 90)], at(91)) == []
    assert notifier.dispatch([resolved(alert, 90)], at(99999)) == []


def test_resolution_of_an_alert_never_paged_is_not_sent(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store, group_wait="30s")
    alert = make_alert()
    assert notifier.dispatch([alert], at(0)) == []
    assert notifier.dispatch([resolved(alert, 10)], at(30)) == []
    assert store.outbox() == []


def test_resolution_of_an_alert_never_paged_is_not_listed(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store)
    paged = make_alert(node_id="1")
    notifier.dispatch([paged], at(0))
    late = make_alert(node_id="2", fired_at=at(20))
    entries = notifier.dispatch([paged, resolved(late, 30)], at(60))
    assert entries == []
    entries = notifier.dispatch([resolved(paged, 61), resolved(late, 30)], at(61))
    assert {e.title for e in entries} == {"[RESOLVED:1] NodeLivenessLost"}
    assert all("Node 2" not in e.body for e in entries)


def test_firing_and_resolved_in_one_notification(store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store)
    one, two = make_alert(node_id="1"), make_alert(node_id="2", fired_at=at(30))
    notifier.dispatch([one], at(0))
    entries = notifier.dispatch([resolved(one, 60), two], at(60))
    body = entries[0].body
    assert entries[0].title == "[FIRING:1] NodeLivenessLost"
    assert entries[0].notify_type == "failure"
    assert body.index("Node 2 is UNAVAILABLE") < body.index("Resolved") < body.index("Node 1")


def test_restart_does_not_page_again_and_sends_resolutions_missed(
        store: Store, make_alert: MakeAlert) -> None:
    alert = make_alert()
    assert dispatcher(store).dispatch([alert], at(0))
    assert dispatcher(store).dispatch([alert], at(5)) == []
    assert dispatcher(store).dispatch([alert], at(600)) == []
    entries = dispatcher(store).dispatch([resolved(alert, 700)], at(900))
    assert {e.title for e in entries} == {"[RESOLVED:1] NodeLivenessLost"}


def test_pending_alerts_are_ignored(store: Store, make_alert: MakeAlert) -> None:
    pending = make_alert(state=State.PENDING)
    assert dispatcher(store).dispatch([pending], at(0)) == []


def test_each_channel_gets_its_format(store: Store, make_alert: MakeAlert) -> None:
    entries = dispatcher(store, channels=["oncall", "chat"]).dispatch([make_alert()], at(0))
    chat = [e for e in entries if e.channel == "chat"]
    assert [e.body_format for e in chat] == ["markdown"]
    assert "**CRITICAL**" in chat[0].body


def test_groups_follow_group_by(store: Store, make_alert: MakeAlert) -> None:
    alerts = [make_alert(node_id="1"), make_alert(node_id="2")]
    entries = dispatcher(store, group_by=["node_id"]).dispatch(alerts, at(0))
    assert [e.title for e in entries] == ["[FIRING:1] NodeLivenessLost"] * 4


@pytest.mark.parametrize(("severities", "expected"), [
    (["critical"], "failure"), (["warning"], "warning"), (["info"], "info"),
    (["info", "critical", "warning"], "failure"), (["info", "warning"], "warning"),
    ([], "success")])
def test_notify_type_follows_the_highest_severity(
        make_alert: MakeAlert, severities: list[str], expected: str) -> None:
    assert notify_type(Notice(firing=[make_alert(severity=s) for s in severities])) == expected


def test_flapping_alone_is_a_warning(make_alert: MakeAlert) -> None:
    assert notify_type(Notice(flapping=[make_alert()])) == "warning"
    assert notify_type(Notice(firing=[make_alert(severity="info")],
                              flapping=[make_alert()])) == "info"


def test_unrouted_alert_is_reported_once(
        store: Store, make_alert: MakeAlert, caplog: pytest.LogCaptureFixture) -> None:
    notifier = dispatcher(store, match={"severity": "critical"})
    warning = make_alert(severity="warning")
    assert notifier.dispatch([warning], at(0)) == []
    assert notifier.dispatch([warning], at(1)) == []
    assert [r.getMessage() for r in caplog.records].count(
        f"alert NodeLivenessLost {dict(warning.labels)} matches no route: not notified") == 1
