"""The state store: one SQLite file (WAL) holding everything that must survive a restart.

Alert instances, the notification log (what each group last told each channel), the outbox
(notifications not yet delivered), event cursors and the last poll of each source.
Every write is one short transaction, so a `kill -9` at any point leaves a consistent file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from watchdog.alerts import Alert, State

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    state TEXT NOT NULL,
    active_at REAL NOT NULL,
    last_true_at REAL NOT NULL,
    fired_at REAL,
    resolved_at REAL
);
CREATE TABLE IF NOT EXISTS nflog (
    group_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    firing TEXT NOT NULL,
    resolved TEXT NOT NULL,
    sent_at REAL NOT NULL,
    PRIMARY KEY (group_key, channel)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    url TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    body_format TEXT NOT NULL,
    notify_type TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS cursors (
    cluster TEXT NOT NULL,
    source TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (cluster, source)
);
CREATE TABLE IF NOT EXISTS polls (
    cluster TEXT NOT NULL,
    source TEXT NOT NULL,
    at REAL NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (cluster, source)
);
"""


class StoreError(Exception):
    """The state file cannot be opened or written; the message names the file."""


@dataclass(frozen=True)
class OutboxEntry:
    """One notification to one Apprise URL, kept until Apprise reports it delivered."""

    channel: str
    url: str
    title: str
    body: str
    body_format: str
    notify_type: str
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    last_error: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class NotifyRecord:
    """What a group last told a channel: the dedup stage compares against it."""

    firing: frozenset[str]
    resolved: frozenset[str]
    sent_at: datetime


@dataclass(frozen=True)
class PollRecord:
    cluster: str
    source: str
    at: datetime
    ok: bool
    error: str | None


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def _at(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=2000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the state store: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def scratch_copy(self) -> Store:
        """An in-memory copy, for a dry run that must change nothing on disk."""
        copy = Store(Path(":memory:"))
        self._db.backup(copy._db)
        return copy

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write the state store: {exc}") from None

    # Alert instances -------------------------------------------------------------------

    def load_alerts(self) -> dict[str, Alert]:
        rows = self._db.execute(
            "SELECT labels, annotations, state, active_at, last_true_at, fired_at, resolved_at"
            " FROM alerts").fetchall()
        alerts = (Alert(json.loads(r[0]), json.loads(r[1]), State(r[2]), _at(r[3]), _at(r[4]),
                        _dt(r[5]), _dt(r[6])) for r in rows)
        return {alert.fingerprint: alert for alert in alerts}

    def save_alerts(self, changed: Iterable[Alert], removed: Iterable[str] = ()) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(a.fingerprint, json.dumps(dict(a.labels)), json.dumps(dict(a.annotations)),
                  a.state.value, a.active_at.timestamp(), a.last_true_at.timestamp(),
                  _ts(a.fired_at), _ts(a.resolved_at)) for a in changed])
            db.executemany("DELETE FROM alerts WHERE fingerprint = ?", [(fp,) for fp in removed])

    # Notification log and outbox -------------------------------------------------------

    def notify_record(self, group_key: str, channel: str) -> NotifyRecord | None:
        row = self._db.execute(
            "SELECT firing, resolved, sent_at FROM nflog WHERE group_key = ? AND channel = ?",
            (group_key, channel)).fetchone()
        if row is None:
            return None
        return NotifyRecord(frozenset(json.loads(row[0])), frozenset(json.loads(row[1])),
                            _at(row[2]))

    def dispatch(self, entries: Iterable[OutboxEntry],
                 records: Mapping[tuple[str, str], NotifyRecord]) -> None:
        """Queue notifications and log them as sent, atomically: never one without the other."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO outbox (channel, url, title, body, body_format, notify_type,"
                " created_at, attempts, next_attempt_at, last_error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(e.channel, e.url, e.title, e.body, e.body_format, e.notify_type,
                  e.created_at.timestamp(), e.attempts, e.next_attempt_at.timestamp(),
                  e.last_error) for e in entries])
            db.executemany(
                "INSERT OR REPLACE INTO nflog VALUES (?, ?, ?, ?, ?)",
                [(group_key, channel, json.dumps(sorted(r.firing)),
                  json.dumps(sorted(r.resolved)), r.sent_at.timestamp())
                 for (group_key, channel), r in records.items()])

    def notified(self) -> tuple[set[str], set[str]]:
        """Every alert fingerprint some channel was told is firing, and told is resolved."""
        firing: set[str] = set()
        resolved: set[str] = set()
        for row in self._db.execute("SELECT firing, resolved FROM nflog"):
            firing.update(json.loads(row[0]))
            resolved.update(json.loads(row[1]))
        return firing, resolved

    def outbox(self, due_by: datetime | None = None) -> list[OutboxEntry]:
        """Undelivered notifications, oldest first; only those due by `due_by` if given."""
        query = ("SELECT channel, url, title, body, body_format, notify_type, created_at,"
                 " next_attempt_at, attempts, last_error, id FROM outbox")
        params: tuple[float, ...] = ()
        if due_by is not None:
            query += " WHERE next_attempt_at <= ?"
            params = (due_by.timestamp(),)
        rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [OutboxEntry(r[0], r[1], r[2], r[3], r[4], r[5], _at(r[6]), _at(r[7]), r[8], r[9],
                            r[10]) for r in rows]

    def delivered(self, entry_id: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

    def retry_later(self, entry_id: int, at: datetime, error: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?,"
                       " last_error = ? WHERE id = ?", (at.timestamp(), error, entry_id))

    # Cursors and polls -----------------------------------------------------------------

    def cursor(self, cluster: str, source: str) -> str | None:
        row = self._db.execute("SELECT value FROM cursors WHERE cluster = ? AND source = ?",
                               (cluster, source)).fetchone()
        return None if row is None else str(row[0])

    def set_cursor(self, cluster: str, source: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", (cluster, source, value))

    def record_poll(self, record: PollRecord) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO polls VALUES (?, ?, ?, ?, ?)",
                       (record.cluster, record.source, record.at.timestamp(), int(record.ok),
                        record.error))

    def polls(self) -> list[PollRecord]:
        rows = self._db.execute(
            "SELECT cluster, source, at, ok, error FROM polls ORDER BY cluster, source")
        return [PollRecord(r[0], r[1], _at(r[2]), bool(r[3]), r[4]) for r in rows]
