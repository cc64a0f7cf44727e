"""Flapping: announced once, quiet while it lasts (also across a restart), then the state it
settled in is notified."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import NOTIFY_T0 as T0
from watchdog.alerts import Alert, State
from watchdog.config import Config, FlappingConfig
from watchdog.notify import Dispatcher, Renderer
from watchdog.notify.flapping import next_flap_record, state_changes
from watchdog.store import FlapRecord, Store

MakeAlert = Callable[..., Alert]
FLAPPING = FlappingConfig(window=timedelta(minutes=10), high=4, low=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def dispatcher(store: Store, flapping: dict[str, Any] | None) -> Dispatcher:
    config = Config.model_validate({
        "clusters": [{"name": "prod", "urls": ["http://crdb-1:8080"]}],
        "channels": {"oncall": {"urls": ["json://127.0.0.1:9/hook"]}},
        "routes": [{"channels": ["oncall"], "group_interval": "1m", "repeat_interval": "1h"}],
        "flapping": flapping,
    })
    return Dispatcher(config, store, Renderer())


def cycle(make_alert: MakeAlert, fired: float, resolved: float | None = None) -> Alert:
    """The alert as the tracker holds it: firing since `fired`, or resolved at `resolved`."""
    if resolved is None:
        return make_alert(fired_at=at(fired))
    return make_alert(fired_at=at(fired), state=State.RESOLVED, resolved_at=at(resolved))


def titles(notifier: Dispatcher, alert: Alert, seconds: float) -> list[str]:
    return [entry.title for entry in notifier.dispatch([alert], at(seconds))]


def test_thresholds_have_hysteresis() -> None:
    record = None
    for n, seconds in enumerate((0, 60, 120), start=1):
        record = next_flap_record(record, [at(seconds)], at(seconds), FLAPPING)
        assert record == FlapRecord(tuple(at(s) for s in (0, 60, 120)[:n]))
    record = next_flap_record(record, [at(180)], at(180), FLAPPING)
    assert record is not None and record.flapping_since == at(180)
    two_left = next_flap_record(record, [], at(661), FLAPPING)
    assert two_left == FlapRecord((at(120), at(180)), flapping_since=at(180))
    one_left = next_flap_record(two_left, [], at(721), FLAPPING)
    assert one_left == FlapRecord((at(180),))
    assert next_flap_record(one_left, [], at(781), FLAPPING) is None


def test_each_firing_and_each_resolution_is_one_change(make_alert: MakeAlert) -> None:
    assert state_changes(cycle(make_alert, 0, 30)) == (at(0), at(30))
    assert state_changes(cycle(make_alert, 0.0004)) == (at(0),)


def test_a_flapping_alert_is_announced_once_then_its_settled_state(
        store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store, FLAPPING.model_dump())
    assert titles(notifier, cycle(make_alert, 0), 0) == ["[FIRING:1] NodeLivenessLost"]
    assert titles(notifier, cycle(make_alert, 0, 120), 120) == ["[RESOLVED:1] NodeLivenessLost"]
    assert titles(notifier, cycle(make_alert, 240), 240) == ["[FIRING:1] NodeLivenessLost"]
    [notice] = notifier.dispatch([cycle(make_alert, 240, 360)], at(360))
    assert (notice.title, notice.notify_type) == ("[FLAPPING:1] NodeLivenessLost", "warning")
    assert "no more notifications until it is stable" in notice.body
    for seconds, alert in ((480, cycle(make_alert, 480)), (600, cycle(make_alert, 480, 600)),
                           (1079, cycle(make_alert, 480, 600))):
        assert titles(notifier, alert, seconds) == [], seconds
    assert titles(notifier, cycle(make_alert, 480, 600), 1080) == [
        "[RESOLVED:1] NodeLivenessLost"]
    assert titles(notifier, cycle(make_alert, 1200), 1200) == ["[FIRING:1] NodeLivenessLost"]


def test_an_alert_that_settles_firing_pages_again(store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store, FLAPPING.model_dump())
    for fired in (0, 240):
        notifier.dispatch([cycle(make_alert, fired)], at(fired))
        notifier.dispatch([cycle(make_alert, fired, fired + 120)], at(fired + 120))
    assert titles(notifier, cycle(make_alert, 480), 480) == []
    assert titles(notifier, cycle(make_alert, 480), 959) == []
    assert titles(notifier, cycle(make_alert, 480), 960) == ["[FIRING:1] NodeLivenessLost"]


def test_flapping_survives_a_restart(store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store, FLAPPING.model_dump())
    for fired in (0, 240):
        notifier.dispatch([cycle(make_alert, fired)], at(fired))
        notifier.dispatch([cycle(make_alert, fired, fired + 120)], at(fired + 120))
    restarted = dispatcher(store, FLAPPING.model_dump())
    assert titles(restarted, cycle(make_alert, 480), 480) == []
    assert store.flap_records()[make_alert().fingerprint].flapping_since == at(360)


def test_detection_can_be_turned_off(store: Store, make_alert: MakeAlert) -> None:
    notifier = dispatcher(store, None)
    sent = []
    for fired in (0, 240, 480):
        sent += titles(notifier, cycle(make_alert, fired), fired)
        sent += titles(notifier, cycle(make_alert, fired, fired + 120), fired + 120)
    assert sent == ["[FIRING:1] NodeLivenessLost", "[RESOLVED:1] NodeLivenessLost"] * 3
    assert store.flap_records() == {}


def test_thresholds_must_leave_room_for_hysteresis() -> None:
    with pytest.raises(ValueError, match=r"low \(3\) must be below high \(3\)"):
        FlappingConfig(high=3, low=3)
