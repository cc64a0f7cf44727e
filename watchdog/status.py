"""What the service knows right now, as JSON-ready records and as text.

One source for `/api/alerts`, `/api/silences` and `crdb-watchdog status`; the command reads
the state store directly (SQLite WAL lets it read while the service writes), so it works
whether or not the service runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from watchdog.alerts import Alert
from watchdog.store import PollRecord, Store

_STATE_ORDER = {"firing": 0, "pending": 1, "resolved": 2}


def alert_record(alert: Alert) -> dict[str, Any]:
    return {"fingerprint": alert.fingerprint, "alertname": alert.name,
            "cluster": alert.cluster, "severity": alert.severity, "state": alert.state.value,
            "labels": dict(alert.labels), "annotations": dict(alert.annotations),
            "active_at": _iso(alert.active_at), "fired_at": _iso(alert.fired_at),
            "resolved_at": _iso(alert.resolved_at)}


def alert_records(alerts: Iterable[Alert]) -> list[dict[str, Any]]:
    """Firing first, then pending, then resolved; by cluster and name within each."""
    ordered = sorted(alerts, key=lambda a: (_STATE_ORDER.get(a.state.value, 3), a.cluster,
                                            a.name, sorted(a.labels.items())))
    return [alert_record(alert) for alert in ordered]


def silence_records(store: Store, now: datetime) -> list[dict[str, Any]]:
    """The silences in force now, ending first first."""
    return [{"id": s.id, "matchers": [str(m) for m in s.matchers],
             "starts_at": _iso(s.starts_at), "ends_at": _iso(s.ends_at), "comment": s.comment,
             "created_by": s.created_by} for s in store.silences(active_at=now)]


def poll_record(poll: PollRecord) -> dict[str, Any]:
    return {"cluster": poll.cluster, "source": poll.source, "at": _iso(poll.at), "ok": poll.ok,
            "error": poll.error}


def report(store: Store, now: datetime) -> dict[str, Any]:
    """`crdb-watchdog status --json`."""
    return {"alerts": alert_records(store.load_alerts().values()),
            "silences": silence_records(store, now),
            "polls": [poll_record(poll) for poll in store.polls()],
            "outbox": len(store.outbox())}


def render_text(status: dict[str, Any], now: datetime) -> str:
    """`crdb-watchdog status`: three short tables a person reads at a glance."""
    lines = ["ALERTS"]
    lines += [f"  {a['state'].upper():9}{a['severity']:9}{a['cluster']} {a['alertname']}: "
              f"{a['annotations'].get('summary', '')}" for a in status["alerts"]] or ["  none"]
    lines.append("SILENCES")
    lines += [f"  {s['id']}  {' '.join(s['matchers'])}  until {s['ends_at']}  "
              f"by {s['created_by']}: {s['comment']}" for s in status["silences"]] or ["  none"]
    lines.append("LAST POLLS")
    for poll in status["polls"]:
        age = (now - datetime.fromisoformat(poll["at"])).total_seconds()
        outcome = "ok" if poll["ok"] else f"FAILED: {poll['error']}"
        lines.append(f"  {poll['cluster']} {poll['source']:11}{age:7.1f} s ago  {outcome}")
    if not status["polls"]:
        lines.append("  none yet")
    lines.append(f"OUTBOX  {status['outbox']} notification(s) not yet delivered")
    return "\n".join(lines)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
