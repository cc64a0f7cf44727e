"""The state store: one SQLite file (WAL) holding everything that must survive a restart.

Alert instances, the notification log (what each group last told each channel), the outbox
(notifications not yet delivered), event cursors and the last poll of each source; for the
notify pipeline also silences, the alerts' recent state changes (flap detection), and what
a page shows about its nodes (their address and locality, their recent events).
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
    muted TEXT NOT NULL DEFAULT '[]',
    flapping TEXT NOT NULL DEFAULT '[]',
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
    last_error TEXT,
    escalated INTEGER NOT NULL DEFAULT 0
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
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    comment TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS flaps (
    fingerprint TEXT PRIMARY KEY,
    changes TEXT NOT NULL,
    flapping_since REAL
);
CREATE TABLE IF NOT EXISTS events (
    cluster TEXT NOT NULL,
    id TEXT NOT NULL,
    at REAL NOT NULL,
    node_id TEXT,
    text TEXT NOT NULL,
    PRIMARY KEY (cluster, id)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (at);
CREATE TABLE IF NOT EXISTS nodes (
    cluster TEXT NOT NULL,
    node_id TEXT NOT NULL,
    address TEXT NOT NULL,
    locality TEXT NOT NULL,
    PRIMARY KEY (cluster, node_id)
);
"""
# Columns added since a table was first created: a state file from before gets them on open.
_ADDED_COLUMNS = (
    ("nflog", "muted", "TEXT NOT NULL DEFAULT '[]'"),
    ("nflog", "flapping", "TEXT NOT NULL DEFAULT '[]'"),
    ("outbox", "escalated", "INTEGER NOT NULL DEFAULT 0"),
)


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
    escalated: bool = False
    """Also queued to the fallback channel (that happens once)."""


@dataclass(frozen=True)
class NotifyRecord:
    """What a group last told a channel: the dedup stage compares against it.

    `muted`: told firing, then silenced or inhibited; `flapping`: told it is flapping.
    """

    firing: frozenset[str]
    resolved: frozenset[str]
    sent_at: datetime
    muted: frozenset[str] = frozenset()
    flapping: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Matcher:
    """`name op value` on one label: `=`, `!=`, `=~` or `!~` (regular expressions anchored)."""

    name: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


@dataclass(frozen=True)
class Silence:
    """Alerts whose labels satisfy every matcher are not notified from start to end."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str


@dataclass(frozen=True)
class FlapRecord:
    """An alert's state changes within the flapping window, and since when it flaps."""

    changes: tuple[datetime, ...]
    flapping_since: datetime | None = None


@dataclass(frozen=True)
class RecentEvent:
    """A cluster event worth showing on a page; `node_id` None: the whole cluster's."""

    cluster: str
    id: str
    at: datetime
    node_id: str | None
    text: str


@dataclass(frozen=True)
class NodeInfo:
    """Where a node is, as its last nodes poll said: for pages about that node."""

    address: str
    locality: Mapping[str, str]


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
            self._add_missing_columns()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the state store: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def _add_missing_columns(self) -> None:
        for table, column, declaration in _ADDED_COLUMNS:
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

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
            "SELECT firing, resolved, sent_at, muted, flapping FROM nflog"
            " WHERE group_key = ? AND channel = ?", (group_key, channel)).fetchone()
        if row is None:
            return None
        return NotifyRecord(_set(row[0]), _set(row[1]), _at(row[2]), _set(row[3]), _set(row[4]))

    def dispatch(self, entries: Iterable[OutboxEntry],
                 records: Mapping[tuple[str, str], NotifyRecord]) -> None:
        """Queue notifications and log them as sent, atomically: never one without the other."""
        with self._transaction() as db:
            _queue(db, entries)
            db.executemany(
                "INSERT OR REPLACE INTO nflog"
                " (group_key, channel, firing, resolved, sent_at, muted, flapping)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(group_key, channel, _json_set(r.firing), _json_set(r.resolved),
                  r.sent_at.timestamp(), _json_set(r.muted), _json_set(r.flapping))
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
                 " next_attempt_at, attempts, last_error, id, escalated FROM outbox")
        params: tuple[float, ...] = ()
        if due_by is not None:
            query += " WHERE next_attempt_at <= ?"
            params = (due_by.timestamp(),)
        rows = self._db.execute(query + " ORDER BY id", params).fetchall()
        return [OutboxEntry(r[0], r[1], r[2], r[3], r[4], r[5], _at(r[6]), _at(r[7]), r[8], r[9],
                            r[10], bool(r[11])) for r in rows]

    def delivered(self, entry_id: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

    def retry_later(self, entry_id: int, at: datetime, error: str,
                    fallback: Iterable[OutboxEntry] = ()) -> None:
        """Count a failed attempt; queue `fallback` entries with it, once (marks it escalated)."""
        with self._transaction() as db:
            escalate = _queue(db, fallback) > 0
            db.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?,"
                       " last_error = ?, escalated = escalated OR ? WHERE id = ?",
                       (at.timestamp(), error, escalate, entry_id))

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

    # Silences --------------------------------------------------------------------------

    def add_silence(self, silence: Silence, forget_ended_before: datetime) -> None:
        """Keep a new silence, and forget those that ended before `forget_ended_before`."""
        with self._transaction() as db:
            db.execute("DELETE FROM silences WHERE ends_at < ?",
                       (forget_ended_before.timestamp(),))
            db.execute("INSERT INTO silences VALUES (?, ?, ?, ?, ?, ?)",
                       (silence.id, json.dumps([[m.name, m.op, m.value]
                                                for m in silence.matchers]),
                        silence.starts_at.timestamp(), silence.ends_at.timestamp(),
                        silence.comment, silence.created_by))

    def silences(self, active_at: datetime | None = None) -> list[Silence]:
        """The silences kept (only those active at `active_at` if given), ending first first."""
        query = ("SELECT id, matchers, starts_at, ends_at, comment, created_by FROM silences")
        params: tuple[float, ...] = ()
        if active_at is not None:
            query += " WHERE starts_at <= ? AND ends_at > ?"
            params = (active_at.timestamp(), active_at.timestamp())
        rows = self._db.execute(query + " ORDER BY ends_at, id", params).fetchall()
        return [Silence(r[0], tuple(Matcher(*m) for m in json.loads(r[1])), _at(r[2]), _at(r[3]),
                        r[4], r[5]) for r in rows]

    def expire_silence(self, silence_id: str, now: datetime) -> bool:
        """End an active silence now; False when no active silence has that id."""
        with self._transaction() as db:
            changed = db.execute("UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?",
                                 (now.timestamp(), silence_id, now.timestamp())).rowcount
        return changed > 0

    # Flap detection --------------------------------------------------------------------

    def flap_records(self) -> dict[str, FlapRecord]:
        rows = self._db.execute("SELECT fingerprint, changes, flapping_since FROM flaps")
        return {r[0]: FlapRecord(tuple(_at(at) for at in json.loads(r[1])), _dt(r[2]))
                for r in rows}

    def save_flaps(self, changed: Mapping[str, FlapRecord], removed: Iterable[str]) -> None:
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO flaps VALUES (?, ?, ?)",
                           [(fp, json.dumps([at.timestamp() for at in r.changes]),
                             _ts(r.flapping_since)) for fp, r in changed.items()])
            db.executemany("DELETE FROM flaps WHERE fingerprint = ?", [(fp,) for fp in removed])

    # What pages show about nodes -------------------------------------------------------

    def record_events(self, events: Iterable[RecentEvent], forget_before: datetime) -> None:
        """Keep events for pages (a repeated id is kept once); forget those before a time."""
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
                           [(e.cluster, e.id, e.at.timestamp(), e.node_id, e.text)
                            for e in events])
            db.execute("DELETE FROM events WHERE at < ?", (forget_before.timestamp(),))

    def recent_events(self, since: datetime) -> list[RecentEvent]:
        """Every cluster's events since a time, newest first."""
        rows = self._db.execute("SELECT cluster, id, at, node_id, text FROM events"
                                " WHERE at >= ? ORDER BY at DESC, id", (since.timestamp(),))
        return [RecentEvent(r[0], r[1], _at(r[2]), r[3], r[4]) for r in rows]

    def record_nodes(self, cluster: str, nodes: Mapping[str, NodeInfo]) -> None:
        """Replace a cluster's node directory (node id to address and locality)."""
        with self._transaction() as db:
            db.execute("DELETE FROM nodes WHERE cluster = ?", (cluster,))
            db.executemany("INSERT INTO nodes VALUES (?, ?, ?, ?)",
                           [(cluster, node_id, n.address, json.dumps(dict(n.locality)))
                            for node_id, n in nodes.items()])

    def nodes(self) -> dict[tuple[str, str], NodeInfo]:
        """Every cluster's node directory, by (cluster, node id)."""
        rows = self._db.execute("SELECT cluster, node_id, address, locality FROM nodes")
        return {(r[0], r[1]): NodeInfo(r[2], json.loads(r[3])) for r in rows}


def _queue(db: sqlite3.Connection, entries: Iterable[OutboxEntry]) -> int:
    """Insert outbox entries within the caller's transaction; returns how many."""
    rows = [(e.channel, e.url, e.title, e.body, e.body_format, e.notify_type,
             e.created_at.timestamp(), e.attempts, e.next_attempt_at.timestamp(), e.last_error,
             e.escalated) for e in entries]
    db.executemany("INSERT INTO outbox (channel, url, title, body, body_format, notify_type,"
                   " created_at, attempts, next_attempt_at, last_error, escalated)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def _set(text: str) -> frozenset[str]:
    return frozenset(json.loads(text))


def _json_set(values: frozenset[str]) -> str:
    return json.dumps(sorted(values))
