"""Silences: matchers, their checks, the store, and `crdb-watchdog silence add/list/expire`."""

from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import NOTIFY_T0 as T0
from watchdog.cli import main
from watchdog.notify.silences import (
    KEEP_ENDED,
    describe,
    matches,
    new_silence,
    parse_matcher,
    silenced,
)
from watchdog.store import Matcher, Store

LABELS = {"alertname": "NodeLivenessLost", "cluster": "prod", "node_id": "12"}


@pytest.mark.parametrize(("text", "expected"), [
    ("alertname=NodeLivenessLost", True), ("alertname!=NodeLivenessLost", False),
    ("node_id=~1|12", True), ("node_id=~1", False), ("node_id!~1.*", False),
    ("team=", True), ("team!=", False), ("summary=a=b", False),
])
def test_matchers_follow_alertmanager(text: str, expected: bool) -> None:
    assert matches(parse_matcher(text), LABELS) is expected


def test_a_matcher_keeps_everything_after_its_operator() -> None:
    assert parse_matcher("summary=a=b") == Matcher("summary", "=", "a=b")
    assert parse_matcher("x=~a|b") == Matcher("x", "=~", "a|b")
    assert str(parse_matcher("x!~a|b")) == "x!~a|b"


@pytest.mark.parametrize(("text", "error"), [
    ("node_id", "invalid matcher 'node_id'"), ("=x", "invalid matcher"),
    ("9lives=x", "invalid matcher"), ("node_id=~(", "invalid regular expression"),
])
def test_bad_matchers_say_what_to_write(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_matcher(text)


def test_a_silence_must_not_match_everything_nor_end_at_once() -> None:
    every = [parse_matcher("team=~.*"), parse_matcher("x!=y")]
    with pytest.raises(ValueError, match="match every alert"):
        new_silence(every, timedelta(hours=1), "", "bob", T0)
    with pytest.raises(ValueError, match="positive duration"):
        new_silence([parse_matcher("node_id=1")], timedelta(0), "", "bob", T0)


def test_every_matcher_of_some_silence_must_hold() -> None:
    narrow = new_silence([parse_matcher("cluster=prod"), parse_matcher("node_id=3")],
                         timedelta(hours=1), "", "bob", T0)
    assert not silenced(LABELS, [narrow])
    wide = new_silence([parse_matcher("cluster=prod")], timedelta(hours=1), "", "bob", T0)
    assert silenced(LABELS, [narrow, wide])


def test_the_store_keeps_silences_until_a_week_after_they_end(store: Store) -> None:
    one = new_silence([parse_matcher("node_id=1")], timedelta(hours=2), "disk swap", "bob", T0)
    store.add_silence(one, forget_ended_before=T0 - KEEP_ENDED)
    assert store.silences(active_at=T0) == [one]
    assert store.silences(active_at=T0 + timedelta(hours=2)) == []
    assert store.expire_silence(one.id, T0 + timedelta(hours=1))
    assert not store.expire_silence(one.id, T0 + timedelta(hours=1))
    assert not store.expire_silence("nosuchid", T0)
    [ended] = store.silences()
    assert ended.ends_at == T0 + timedelta(hours=1)
    later = T0 + timedelta(hours=1) + KEEP_ENDED + timedelta(seconds=1)
    two = new_silence([parse_matcher("node_id=2")], timedelta(hours=2), "", "bob", later)
    store.add_silence(two, forget_ended_before=later - KEEP_ENDED)
    assert store.silences() == [two]


def test_describe_is_one_line_a_person_reads() -> None:
    made = new_silence([parse_matcher("alertname=NodeDead"), parse_matcher("node_id=~1|2")],
                       timedelta(hours=2), "replacing disks", "bob", T0)
    assert describe(made, T0 + timedelta(minutes=30)) == (
        f"{made.id}  alertname=NodeDead node_id=~1|2  ends in 1h30m (2026-11-27T13:00:00Z)  "
        "by bob: replacing disks")
    assert " ended (" in describe(made, T0 + timedelta(hours=3))


# The command -----------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "watchdog.yaml"
    path.write_text(f"""\
clusters: [{{name: prod, urls: ["http://127.0.0.1:9"]}}]
channels: {{hook: {{urls: ["json://127.0.0.1:9/hook"]}}}}
routes: [{{channels: [hook]}}]
state: {tmp_path / "state.db"}
""")
    return path


def test_silence_add_list_and_expire(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["silence", "add", "-c", str(config), "--match", "alertname=NodeDead",
                 "--match", "node_id=~1|2", "--duration", "2h", "--comment", "disks",
                 "--author", "alice"]) == 0
    added = capsys.readouterr().out
    silence_id = added.split()[0]
    assert "alertname=NodeDead node_id=~1|2  ends in 2h (" in added
    assert added.rstrip().endswith("by alice: disks")
    assert main(["silence", "list", "-c", str(config)]) == 0
    assert capsys.readouterr().out == added
    assert main(["silence", "expire", "-c", str(config), silence_id]) == 0
    assert capsys.readouterr().out == f"{silence_id} expired\n"
    assert main(["silence", "list", "-c", str(config)]) == 0
    assert capsys.readouterr().out == "no active silences\n"
    assert main(["silence", "list", "-c", str(config), "--all"]) == 0
    assert f"{silence_id}  alertname=NodeDead node_id=~1|2  ended (" in capsys.readouterr().out
    assert main(["silence", "expire", "-c", str(config), silence_id]) == 1
    assert capsys.readouterr().err == f"no active silence {silence_id}\n"


@pytest.mark.parametrize(("arguments", "error"), [
    (["--match", "node_id", "--duration", "1h"], "invalid matcher 'node_id'"),
    (["--match", "node_id=1", "--duration", "soon"], "invalid duration 'soon'"),
    (["--match", "node_id=~.*", "--duration", "1h"], "these matchers match every alert"),
    (["--duration", "1h"], "the following arguments are required: --match"),
])
def test_silence_add_refuses_what_would_not_work_as_a_usage_error(
        config: Path, capsys: pytest.CaptureFixture[str], arguments: list[str],
        error: str) -> None:
    assert exit_code(["silence", "add", "-c", str(config), "--comment", "x", *arguments]) == 2
    assert error in capsys.readouterr().err


def exit_code(argv: list[str]) -> int:
    """What the process exits with: argparse exits by itself on a usage error."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(str(exc.code))
