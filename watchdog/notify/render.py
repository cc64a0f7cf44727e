"""Rendering: a group's alerts into a notification title and body, through Jinja2 templates.

The built-in templates live in the top-level `templates/` folder; a user's folder replaces
any of them by file name. A user's template that fails (syntax or at render time) is logged
and replaced by the built-in one: a page is never lost to a typo. Annotations arrive as
rendered text and are passed to templates as data, never compiled again.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from watchdog.alerts import Alert, State
from watchdog.durations import format_duration
from watchdog.resources import builtin_dir
from watchdog.sourcefile import InvalidInput, Problem

logger = logging.getLogger(__name__)

Format = Literal["text", "markdown", "html"]

TITLE_TEMPLATE = "title.txt.j2"
BODY_TEMPLATES: Mapping[Format, str] = {
    "text": "body.txt.j2", "markdown": "body.md.j2", "html": "body.html.j2",
}

# Labels shown in their own place in a notification; any other label is listed as is.
_SHOWN = frozenset({"alertname", "cluster", "severity", "node_id", "address"})
# CockroachDB locality tiers as the rule engine copies them into labels (`--locality`).
_LOCALITY_TIERS = frozenset({"cloud", "country", "region", "datacenter", "zone", "rack"})


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

    def render(self, firing: Sequence[Alert], resolved: Sequence[Alert], fmt: Format, *,
               now: datetime | None = None) -> tuple[str, str]:
        """(title, body) of one notification; `now` dates "for 3m" (default: the clock)."""
        context = self._context(firing, resolved, now or datetime.now(UTC))
        title = self._render(TITLE_TEMPLATE, context)
        return " ".join(title.split()), self._render(BODY_TEMPLATES[fmt], context).strip()

    def validate(self) -> None:
        """Render each of the user's templates on sample alerts; InvalidInput lists failures.

        For `check`: at run time the same failures fall back to the built-in templates.
        """
        if self._user is None:
            return
        folder, user = self._user
        context = self._context([_SAMPLE], [_SAMPLE_RESOLVED], _SAMPLE_TIME)
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

    def _context(self, firing: Sequence[Alert], resolved: Sequence[Alert],
                 now: datetime) -> dict[str, Any]:
        firing, resolved = _chronological(firing), _chronological(resolved)
        counted = firing or resolved
        return {
            "status": "firing" if firing else "resolved",
            "count": len(counted),
            "alertnames": list(dict.fromkeys(alert.name for alert in counted)),
            "firing": [self._view(alert, now) for alert in firing],
            "resolved": [self._view(alert, now) for alert in resolved],
            "now": _iso(now),
        }

    def _view(self, alert: Alert, now: datetime) -> AlertView:
        labels, notes = alert.labels, alert.annotations
        started = alert.fired_at or alert.active_at
        ended = alert.resolved_at if alert.state is State.RESOLVED else None
        node_id = labels.get("node_id", "")
        return AlertView(
            name=alert.name, cluster=alert.cluster, severity=alert.severity,
            state=alert.state.value, summary=notes.get("summary", ""),
            description=notes.get("description", ""), runbook_url=notes.get("runbook_url", ""),
            node_id=node_id, address=labels.get("address", ""),
            locality=_pairs(labels, _LOCALITY_TIERS),
            extra_labels=_pairs(labels, labels.keys() - _SHOWN - _LOCALITY_TIERS),
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
            "node_id": "1", "address": "node1:26257", "region": "us-east1"},
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
