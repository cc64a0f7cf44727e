"""Rendering: a group's alerts into a notification title and body, through Jinja2 templates.

The built-in templates live in the top-level `templates/` folder; a user's folder replaces
any of them by file name. A user's template that fails (syntax or at render time) is logged
and replaced by the built-in one: a page is never lost to a typo. Annotations arrive as
rendered text and are passed to templates as data, never compiled again; so do the node
addresses, locality tiers and events the cluster reported.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from watchdog.alerts import Alert, State
from watchdog.durations import format_duration
from watchdog.resources import builtin_dir
from watchdog.sourcefile import InvalidInput, Problem
from watchdog.store import NodeInfo, RecentEvent

logger = logging.getLogger(__name__)

Format = Literal["text", "markdown", "html"]

TITLE_TEMPLATE = "title.txt.j2"
BODY_TEMPLATES: Mapping[Format, str] = {
    "text": "body.txt.j2", "markdown": "body.md.j2", "html": "body.html.j2",
}

# Labels shown in their own place in a notification (with the node's locality tiers); any
# other label is listed as is.
_SHOWN = frozenset({"alertname", "cluster", "severity", "node_id", "address"})
EVENTS_PER_PAGE = 10


@dataclass(frozen=True)
class Notice:
    """What one notification tells: the group's firing alerts, the resolutions announced
    now, the alerts announced as flapping; and what is known around them (the node
    directory, recent events), from which the page picks what concerns its alerts."""

    firing: Sequence[Alert] = ()
    resolved: Sequence[Alert] = ()
    flapping: Sequence[Alert] = ()
    nodes: Mapping[tuple[str, str], NodeInfo] = field(default_factory=dict)
    events: Sequence[RecentEvent] = ()
    """Newest first."""


@dataclass(frozen=True)
class EventView:
    """One recent event as templates see it: `where` is `node 2` or `cluster prod`."""

    at: str
    where: str
    text: str


@dataclass(frozen=True)
class AlertView:
    """One alert as templates see it: plain strings, ready to print ("" when absent)."""

    name: str
    cluster: str
    severity: str
    state: str
    summary: str
    description: str
    runbook_url: str
    value: str
    node_id: str
    address: str
    locality: str
    extra_labels: str
    labels: Mapping[str, str]
    fired_at: str
    resolved_at: str
    duration: str
    console_url: str


class Renderer:
    def __init__(self, overrides: Path | None = None,
                 clusters: Mapping[str, str] | None = None) -> None:
        """`clusters` maps a cluster name to its DB Console base URL, for links."""
        builtin = builtin_dir("templates")
        self._builtin = _environment(builtin)
        self._user = None if overrides is None else (overrides, _environment(overrides, builtin))
        self._consoles = {name: url.rstrip("/") for name, url in (clusters or {}).items()}

    def render(self, notice: Notice, fmt: Format, *,
               now: datetime | None = None) -> tuple[str, str]:
        """(title, body) of one notification; `now` dates "for 3m" (default: the clock)."""
        context = self._context(notice, now or datetime.now(UTC))
        title = self._render(TITLE_TEMPLATE, context)
        return " ".join(title.split()), self._render(BODY_TEMPLATES[fmt], context).strip()

    def sample(self, fmt: Format) -> tuple[str, str]:
        """A page about a made-up alert, for `notify-test`: it shows what pages look like."""
        return self.render(_SAMPLE_NOTICE, fmt, now=_SAMPLE_TIME + timedelta(minutes=3))

    def validate(self) -> None:
        """Render each of the user's templates on sample alerts; InvalidInput lists failures.

        For `check`: at run time the same failures fall back to the built-in templates.
        """
        if self._user is None:
            return
        folder, user = self._user
        every_section = replace(_SAMPLE_NOTICE, resolved=[_SAMPLE_RESOLVED],
                                flapping=[_SAMPLE_FLAPPING])
        context = self._context(every_section, _SAMPLE_TIME)
        problems = []
        for name in (TITLE_TEMPLATE, *BODY_TEMPLATES.values()):
            try:
                user.get_template(name).render(context)
            except Exception as exc:  # any error of a user's template is a problem to report
                problems.append(_problem(folder / name, exc))
        if problems:
            raise InvalidInput(problems)

    def _render(self, name: str, context: Mapping[str, Any]) -> str:
        if self._user is not None:
            folder, user = self._user
            try:
                return user.get_template(name).render(context)
            except Exception as exc:  # whatever a user's template does, the page goes out
                problem = _problem(folder / name, exc)
                logger.error("%s (using the built-in template instead)", problem)
        return self._builtin.get_template(name).render(context)

    def _context(self, notice: Notice, now: datetime) -> dict[str, Any]:
        """The names templates see. The title counts the first kind present, in this order."""
        kinds = {"firing": notice.firing, "flapping": notice.flapping,
                 "resolved": notice.resolved}
        alerts = {kind: _chronological(listed) for kind, listed in kinds.items()}
        status = next((kind for kind, listed in alerts.items() if listed), "resolved")
        return {
            "status": status,
            "count": len(alerts[status]),
            "alertnames": list(dict.fromkeys(alert.name for alert in alerts[status])),
            **{kind: [self._view(alert, notice.nodes, now) for alert in listed]
               for kind, listed in alerts.items()},
            "events": _events_of([a for listed in alerts.values() for a in listed],
                                 notice.events),
            "now": _iso(now),
        }

    def _view(self, alert: Alert, nodes: Mapping[tuple[str, str], NodeInfo],
              now: datetime) -> AlertView:
        labels, notes = alert.labels, alert.annotations
        started = alert.fired_at or alert.active_at
        ended = alert.resolved_at if alert.state is State.RESOLVED else None
        node_id = labels.get("node_id", "")
        node = nodes.get((alert.cluster, node_id), NodeInfo("", {}))
        return AlertView(
            name=alert.name, cluster=alert.cluster, severity=alert.severity,
            state=alert.state.value, summary=notes.get("summary", ""),
            description=notes.get("description", ""), runbook_url=notes.get("runbook_url", ""),
            value=notes.get("value", ""), node_id=node_id,
            address=labels.get("address") or node.address,
            locality=_pairs(node.locality, node.locality.keys()),
            extra_labels=_pairs(labels, labels.keys() - _SHOWN - node.locality.keys()),
            labels=labels, fired_at=_iso(started), resolved_at=_iso(ended) if ended else "",
            duration=_human((ended or now) - started),
            console_url=self._console_url(alert.cluster, node_id),
        )

    def _console_url(self, cluster: str, node_id: str) -> str:
        base = self._consoles.get(cluster)
        if base is None:
            return ""
        return f"{base}/#/node/{node_id}" if node_id else f"{base}/#/overview/list"


def _environment(*folders: Path) -> ImmutableSandboxedEnvironment:
    """A sandbox that cannot change the data it is given; HTML templates escape values."""
    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(folders),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _problem(path: Path, exc: Exception) -> Problem:
    """`path:line: error`: syntax errors carry their line, runtime ones leave it in frames."""
    line: int | None = getattr(exc, "lineno", None)
    if line is None:
        frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
                  if frame.filename == str(path)]
        line = frames[-1].lineno if frames else None
    return Problem(str(path), line, f"{type(exc).__name__}: {exc}")


def _events_of(alerts: Sequence[Alert], events: Sequence[RecentEvent]) -> list[EventView]:
    """The newest events of the alerts' nodes, and their clusters' cluster-wide events."""
    nodes = {(alert.cluster, alert.labels["node_id"]) for alert in alerts
             if "node_id" in alert.labels}
    clusters = {alert.cluster for alert in alerts}
    chosen = [event for event in events if (event.cluster, event.node_id) in nodes
              or (event.node_id is None and event.cluster in clusters)]
    return [EventView(_iso(event.at), f"cluster {event.cluster}" if event.node_id is None
                      else f"node {event.node_id}", event.text)
            for event in chosen[:EVENTS_PER_PAGE]]


def _chronological(alerts: Sequence[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda alert: (alert.fired_at or alert.active_at, alert.fingerprint))


def _pairs(labels: Mapping[str, str], names: AbstractSet[str]) -> str:
    """`region=us-east1, zone=b`: the labels among `names`, in the labels' own order."""
    return ", ".join(f"{name}={value}" for name, value in labels.items() if name in names)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _human(length: timedelta) -> str:
    """`3m12s`: whole seconds are precise enough for a page."""
    return format_duration(timedelta(seconds=max(0, int(length.total_seconds()))))


_SAMPLE_TIME = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_SAMPLE = Alert(
    labels={"alertname": "NodeLivenessLost", "cluster": "example", "severity": "critical",
            "region": "us-east1", "az": "us-east1-b", "node_id": "1", "address": "node1:26257"},
    annotations={"summary": "Node 1 (node1:26257) is UNAVAILABLE",
                 "description": "The node stopped heartbeating its liveness record.",
                 "runbook_url": "https://example.com/runbook"},
    state=State.FIRING, active_at=_SAMPLE_TIME, last_true_at=_SAMPLE_TIME, fired_at=_SAMPLE_TIME,
)
_SAMPLE_RESOLVED = Alert(
    labels={"alertname": "ClusterUnreachable", "cluster": "example", "severity": "critical"},
    annotations={"summary": "Cluster example answers again"},
    state=State.RESOLVED, active_at=_SAMPLE_TIME, last_true_at=_SAMPLE_TIME,
    fired_at=_SAMPLE_TIME, resolved_at=_SAMPLE_TIME,
)
_SAMPLE_FLAPPING = replace(_SAMPLE, labels={**_SAMPLE.labels, "node_id": "2"})
_SAMPLE_NOTICE = Notice(
    firing=[_SAMPLE],
    nodes={("example", "1"): NodeInfo("node1:26257", {"region": "us-east1", "az": "us-east1-b"})},
    events=[RecentEvent("example", "e1", _SAMPLE_TIME - timedelta(minutes=20), "1",
                        "node_restart (down 42s)")],
)
