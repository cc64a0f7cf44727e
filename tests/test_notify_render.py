import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NOTIFY_T0 as T0
from watchdog.alerts import Alert, State
from watchdog.notify import Notice, Renderer
from watchdog.notify.render import BODY_TEMPLATES, EVENTS_PER_PAGE, Format
from watchdog.sourcefile import InvalidInput
from watchdog.store import NodeInfo, RecentEvent

MakeAlert = Callable[..., Alert]
NOW = T0 + timedelta(minutes=3)
FORMATS: list[Format] = ["text", "markdown", "html"]
CONSOLES = {"prod": "http://crdb-1:8080"}
# The simulator's tiers: a page shows whatever tiers the cluster reports, in its order.
NODES = {("prod", str(n)): NodeInfo(f"crdb-{n}:26257", {"region": "us-east1", "az": f"az-{n}"})
         for n in range(1, 8)}


def render(firing: list[Alert], resolved: list[Alert] | None = None, fmt: Format = "text",
           overrides: Path | None = None, **notice: Any) -> tuple[str, str]:
    return Renderer(overrides, CONSOLES).render(
        Notice(firing, resolved or [], **notice), fmt, now=NOW)


def event(node_id: str | None, text: str, minutes_ago: int = 5,
          cluster: str = "prod") -> RecentEvent:
    return RecentEvent(cluster, f"{cluster}-{node_id}-{text}",
                       T0 - timedelta(minutes=minutes_ago), node_id, text)


def resolution(make_alert: MakeAlert, **labels: str) -> Alert:
    return make_alert(state=State.RESOLVED, fired_at=T0 - timedelta(minutes=10),
                      resolved_at=T0, **labels)


def test_titles_count_firing_alerts_or_resolutions(make_alert: MakeAlert) -> None:
    two = [make_alert(node_id="1"), make_alert(node_id="2")]
    assert render(two)[0] == "[FIRING:2] NodeLivenessLost"
    assert render(two[:1], [resolution(make_alert)])[0] == "[FIRING:1] NodeLivenessLost"
    assert render([], [resolution(make_alert)])[0] == "[RESOLVED:1] NodeLivenessLost"
    mixed = [make_alert(), make_alert("NodeDead", fired_at=T0 + timedelta(seconds=1))]
    assert render(mixed)[0] == "[FIRING:2] NodeLivenessLost, NodeDead"


@pytest.mark.parametrize("fmt", FORMATS)
def test_body_carries_what_an_operator_needs(make_alert: MakeAlert, fmt: Format) -> None:
    alert = make_alert(node_id="3", team="db")
    alert = Alert(alert.labels, {"summary": "Node 3 is DEAD", "description": "No heartbeat.",
                                 "runbook_url": "https://runbooks.example/liveness",
                                 "value": "liveness DEAD"},
                  alert.state, alert.active_at, alert.last_true_at, alert.fired_at)
    cluster_wide = make_alert("ClusterUnreachable", node_id=None,
                              fired_at=T0 + timedelta(seconds=30))
    _, body = render([alert, cluster_wide], [resolution(make_alert, node_id="7")], fmt,
                     nodes=NODES, events=[event("3", "node_restart (down 42s)")])
    for text in ("Node 3 is DEAD", "No heartbeat.", "liveness DEAD", "prod", "crdb-3:26257",
                 "region=us-east1, az=az-3", "team=db", "2026-11-27T11:00:00Z",
                 "for 3m", "for 2m30s", "https://runbooks.example/liveness",
                 "http://crdb-1:8080/#/node/3", "http://crdb-1:8080/#/overview/list",
                 "lasted 10m", "2026-11-27T10:55:00Z", "node 3: node_restart (down 42s)"):
        assert text in body, text
    assert body.index("Node 3 is DEAD") < body.index("Resolved") < body.index("Node 7") \
        < body.index("node_restart")


def test_locality_is_the_nodes_own_tiers_and_not_repeated_as_labels(
        make_alert: MakeAlert) -> None:
    _, body = render([make_alert(node_id="2")], nodes=NODES)
    assert "locality: region=us-east1, az=az-2" in body
    assert "labels: zone=us-east1-b" in body  # a label, as far as the node directory knows


def test_a_health_alert_shows_where_its_node_is(make_alert: MakeAlert) -> None:
    unreachable = make_alert("NodeUnreachable", node_id=None, url="http://crdb-4:8080")
    unreachable = Alert({**unreachable.labels, "node_id": "4"}, unreachable.annotations,
                        unreachable.state, T0, T0, T0)
    _, body = render([unreachable], nodes=NODES)
    assert "node: 4 (crdb-4:26257)" in body
    assert "locality: region=us-east1, az=az-4" in body
    assert "labels: url=http://crdb-4:8080" in body


def test_events_are_those_of_the_alerts_nodes_and_their_clusters(make_alert: MakeAlert) -> None:
    events = [event(None, "set_cluster_setting kv.snapshot_rebalance.max_rate", 1),
              event("1", "node_decommissioning (requested by node 3)", 2),
              event("2", "node_restart (down 5s)", 3),
              event(None, "set_cluster_setting elsewhere", 4, cluster="staging"),
              *(event("1", f"node_restart #{n}", 10 + n) for n in range(EVENTS_PER_PAGE))]
    _, body = render([make_alert(node_id="1")], events=events)
    lines = [line.strip() for line in body.splitlines()]
    shown = lines[lines.index("Recent events:") + 1:]
    assert shown[:2] == [
        "2026-11-27T10:59:00Z  cluster prod: set_cluster_setting kv.snapshot_rebalance.max_rate",
        "2026-11-27T10:58:00Z  node 1: node_decommissioning (requested by node 3)"]
    assert len(shown) == EVENTS_PER_PAGE
    assert "node 2" not in body and "elsewhere" not in body


def test_flapping_alerts_have_their_own_title_and_section(make_alert: MakeAlert) -> None:
    title, body = render([], flapping=[make_alert(node_id="5")])
    assert title == "[FLAPPING:1] NodeLivenessLost"
    assert body.startswith("Flapping (")
    assert "Node 5 is UNAVAILABLE" in body
    title, body = render([make_alert(node_id="1")], flapping=[make_alert(node_id="5")])
    assert title == "[FIRING:1] NodeLivenessLost"
    assert body.index("Node 1") < body.index("Flapping") < body.index("Node 5")


def test_formats_differ_in_markup(make_alert: MakeAlert) -> None:
    alert = [make_alert(summary="disk < 15% & falling")]
    text, markdown, html = (render(alert, fmt=fmt)[1] for fmt in FORMATS)
    assert "disk < 15% & falling" in text
    assert "**CRITICAL**" in markdown and "[DB Console](http://crdb-1:8080/#/node/1)" in markdown
    assert "disk &lt; 15% &amp; falling" in html
    _, html = render(alert, fmt="html", events=[event("1", "<script>x</script>")])
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html
    assert '<a href="http://crdb-1:8080/#/node/1">DB Console</a>' in html


@pytest.mark.parametrize("fmt", FORMATS)
def test_annotations_are_data_not_templates(make_alert: MakeAlert, fmt: Format) -> None:
    _, body = render([make_alert(summary="{{ 7*7 }} {% if true %}x{% endif %}")], fmt=fmt)
    assert "{{ 7*7 }} {% if true %}x{% endif %}" in body
    assert "49" not in body


def test_no_console_link_for_an_unknown_cluster(make_alert: MakeAlert) -> None:
    assert "DB Console" not in render([make_alert(cluster="elsewhere")])[1]


def test_override_replaces_a_builtin_template_by_file_name(
        tmp_path: Path, make_alert: MakeAlert) -> None:
    (tmp_path / "title.txt.j2").write_text("{{ count }} x {{ alertnames | first }} on "
                                           "{{ firing[0].cluster }}\n")
    title, body = render([make_alert()], overrides=tmp_path)
    assert title == "1 x NodeLivenessLost on prod"
    assert "Node 1 is UNAVAILABLE" in body


@pytest.mark.parametrize(("template", "line"), [
    ("{{ firing[0].name }}\n{% for a in firing %}\n{{ a.summary }\n", 3),
    ("first line\n{{ firing[0].summry }}\n", 2),
    ("{{ 1 // 0 }}", 1),
])
def test_broken_override_falls_back_to_the_builtin_and_says_where(
        tmp_path: Path, make_alert: MakeAlert, caplog: pytest.LogCaptureFixture,
        template: str, line: int) -> None:
    broken = tmp_path / BODY_TEMPLATES["markdown"]
    broken.write_text(template)
    title, body = render([make_alert()], fmt="markdown", overrides=tmp_path)
    assert title == "[FIRING:1] NodeLivenessLost"
    assert "**CRITICAL** NodeLivenessLost: Node 1 is UNAVAILABLE" in body
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(f"{broken}:{line}: ")
    assert errors[0].endswith(" (using the built-in template instead)")


def test_validate_reports_broken_overrides_with_their_line(tmp_path: Path) -> None:
    Renderer(tmp_path).validate()
    (tmp_path / "title.txt.j2").write_text("[{{ status }}] {{ alertnames | join(', ') }}")
    Renderer(tmp_path).validate()
    (tmp_path / "body.txt.j2").write_text("ok\n{% for a in firing %}{{ a.nme }}{% endfor %}")
    with pytest.raises(InvalidInput) as caught:
        Renderer(tmp_path).validate()
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'body.txt.j2'}:2: UndefinedError: "
        "'watchdog.notify.render.AlertView object' has no attribute 'nme'"]


def test_sandbox_keeps_templates_away_from_python(tmp_path: Path, make_alert: MakeAlert,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "body.txt.j2").write_text("{{ firing[0].__class__.__mro__ }}")
    _, body = render([make_alert()], overrides=tmp_path)
    assert "Node 1 is UNAVAILABLE" in body
    assert "SecurityError: access to attribute '__class__'" in caplog.text
