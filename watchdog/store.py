"""The state store: one SQLite file (WAL) holding everything that must survive a restart.

Alert instances, the notification log (what each group last told each channel), the outbox
(notifications not yet delivered), event cursors and the last poll of each source; for the
notify pipeline also silences, the alerts' recent state changes (flap detection), and what
a page shows about its nodes (their address and locality, their recent events).
Every write is one short transaction, so a `kill -9` at any point leaves a consistent file.
The service's store outlives a failing file by holding the state in memory (`keep_paging`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial, wraps
from pathlib import Path
from sqlite3 import Connection
from typing import Concatenate, ParamSpec, TypeVar

from watchdog.alerts import Alert, State

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

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


def _writes(method: Callable[Concatenate[Store, Connection, P], T],
            ) -> Callable[Concatenate[Store, P], T]:
    """A write method: its statements run as one transaction, on the connection it is given."""
    @wraps(method)
    def write(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(lambda db: method(self, db, *args, **kwargs))
    return write


WRITE_BACK_INTERVAL = 2.0
"""Seconds between attempts to write state held in memory back to its file."""
_SERVICE_TABLES = ("alerts", "nflog", "outbox", "cursors", "polls", "flaps", "events", "nodes")
"""What the service writes. Silences are the CLI's: a write-back never overwrites one."""


class Store:
    def __init__(self, path: Path, *, busy_timeout: float = 2.0,
                 keep_paging: bool = False) -> None:
        """The state file. For the CLI, a file that cannot be opened or written is a
        StoreError naming it: a person is there to read it, and a silence that seemed added
        but was not would be worse than an error.

        `keep_paging` is the service's store, which never lets its file stop a page:

        - A file that cannot be opened or fails SQLite's quick check (garbage, a torn disk)
          is left as it is, for whoever investigates, and the state starts empty in memory
          with a CRITICAL log: the service pages, and says that nothing survives a restart
          (an alert firing now may page again after one). Refusing to start would page no one.
        - A write that fails (another process holds the lock, the disk is full, an I/O error)
          moves the state into memory, copied from the file (which stays readable: WAL), with
          an ERROR log naming the file. The round's alert states advance and the outbox is
          delivered from memory: durability is lost, paging is not. Every WRITE_BACK_INTERVAL
          the whole state is written back in one transaction; once that works the file is
          used again, so a restart after the fault has cleared loses nothing.
        - Write-backs never wait for a lock (busy_timeout 0): a locked file blocks the event
          loop for one `busy_timeout`, at the first failure, not once per write.
        """
        self.path = path
        self.fault: str | None = None
        """Why the state is held in memory; None while the file is in use."""
        self._busy_ms = round(busy_timeout * 1000)
        self._keep_paging = keep_paging
        self._file: Connection | None = None
        self._memory: Connection | None = None
        self._next_write_back = 0.0
        try:
            self._file = self._open(path)
        except StoreError as exc:
            if not keep_paging:
                raise
            self._memory = _connect(":memory:")
            self._memory.executescript(_SCHEMA)
            self.fault = str(exc)
            log.critical("%s. Running with the state in memory only: nothing survives a "
                         "restart, and alerts firing now may page again after one. The file is "
                         "left as it is: move it aside and restart to start a new one.", exc)

    def _open(self, path: Path) -> Connection:
        db = None
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            db = _connect(path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            db.executescript(_SCHEMA)
            _add_missing_columns(db)
            if self._keep_paging:
                _quick_check(db)
        except (OSError, sqlite3.Error) as exc:
            if db is not None:
                db.close()
            raise StoreError(f"{path}: cannot open the state store: {exc}") from None
        return db

    @property
    def _db(self) -> Connection:
        """Where reads go: memory while the state is held there, else the file."""
        db = self._memory if self._memory is not None else self._file
        assert db is not None, "a store always has one of them"
        return db

    def close(self) -> None:
        for db in (self._memory, self._file):
            if db is not None:
                db.close()

    def scratch_copy(self) -> Store:
        """An in-memory copy, for a dry run that must change nothing on disk."""
        copy = Store(Path(":memory:"))
        self._db.backup(copy._db)
        return copy

    def _run(self, write: Callable[[Connection], T]) -> T:
        """One transaction: on the file, or in memory (see `keep_paging`)."""
        try:
            if self._memory is None:
                assert self._file is not None
                try:
                    return _transaction(self._file, write)
                except sqlite3.Error as exc:
                    if not (self._keep_paging and _unwritable(exc)):
                        raise
                    self._hold_in_memory(self._file, exc)
            result = _transaction(self._db, write)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write the state store: {exc}") from None
        self._write_back()
        return result

    def _hold_in_memory(self, file: Connection, exc: sqlite3.Error) -> None:
        memory = _connect(":memory:")
        file.backup(memory)
        file.execute("PRAGMA busy_timeout=0")
        self._memory = memory
        self.fault = f"{self.path}: cannot write the state store: {exc}"
        self._next_write_back = time.monotonic() + WRITE_BACK_INTERVAL
        log.error("%s. Keeping the state in memory and trying to write it back every %g s; "
                  "until then a restart loses what changed (alert states, notifications not "
                  "yet delivered).", self.fault, WRITE_BACK_INTERVAL)

    def _write_back(self) -> None:
        """The state held in memory back to its file, at most every WRITE_BACK_INTERVAL."""
        file, memory = self._file, self._memory
        if file is None or memory is None or time.monotonic() < self._next_write_back:
            return
        self._next_write_back = time.monotonic() + WRITE_BACK_INTERVAL
        try:
            _transaction(file, partial(_copy_tables, memory))
        except sqlite3.Error as exc:
            self.fault = f"{self.path}: cannot write the state store: {exc}"
            return
        memory.close()
        self._memory = self.fault = None
        file.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        log.info("%s: the state store is writable again; the state held in memory is saved",
                 self.path)

    # Alert instances -------------------------------------------------------------------

    def load_alerts(self) -> dict[str, Alert]:
        rows = self._db.execute(
            "SELECT labels, annotations, state, active_at, last_true_at, fired_at, resolved_at"
            " FROM alerts").fetchall()
        alerts = (Alert(json.loads(r[0]), json.loads(r[1]), State(r[2]), _at(r[3]), _at(r[4]),
                        _dt(r[5]), _dt(r[6])) for r in rows)
        return {alert.fingerprint: alert for alert in alerts}

    @_writes
    def save_alerts(self, db: Connection, changed: Iterable[Alert],
                    removed: Iterable[str] = ()) -> None:
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

    @_writes
    def dispatch(self, db: Connection, entries: Iterable[OutboxEntry],
                 records: Mapping[tuple[str, str], NotifyRecord]) -> None:
        """Queue notifications and log them as sent, atomically: never one without the other."""
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

    @_writes
    def delivered(self, db: Connection, entry_id: int) -> None:
        db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

    @_writes
    def retry_later(self, db: Connection, entry_id: int, at: datetime, error: str,
                    fallback: Iterable[OutboxEntry] = ()) -> None:
        """Count a failed attempt; queue `fallback` entries with it, once (marks it escalated)."""
        escalate = _queue(db, fallback) > 0
        db.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?,"
                   " last_error = ?, escalated = escalated OR ? WHERE id = ?",
                   (at.timestamp(), error, escalate, entry_id))

    # Cursors and polls -----------------------------------------------------------------

    def cursor(self, cluster: str, source: str) -> str | None:
        row = self._db.execute("SELECT value FROM cursors WHERE cluster = ? AND source = ?",
                               (cluster, source)).fetchone()
        return None if row is None else str(row[0])

    @_writes
    def set_cursor(self, db: Connection, cluster: str, source: str, value: str) -> None:
        db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", (cluster, source, value))

    @_writes
    def record_poll(self, db: Connection, record: PollRecord) -> None:
        db.execute("INSERT OR REPLACE INTO polls VALUES (?, ?, ?, ?, ?)",
                   (record.cluster, record.source, record.at.timestamp(), int(record.ok),
                    record.error))

    def polls(self) -> list[PollRecord]:
        rows = self._db.execute(
            "SELECT cluster, source, at, ok, error FROM polls ORDER BY cluster, source")
        return [PollRecord(r[0], r[1], _at(r[2]), bool(r[3]), r[4]) for r in rows]

    # Silences --------------------------------------------------------------------------

    @_writes
    def add_silence(self, db: Connection, silence: Silence,
                    forget_ended_before: datetime) -> None:
        """Keep a new silence, and forget those that ended before `forget_ended_before`."""
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

    @_writes
    def expire_silence(self, db: Connection, silence_id: str, now: datetime) -> bool:
        """End an active silence now; False when no active silence has that id."""
        changed = db.execute("UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?",
                             (now.timestamp(), silence_id, now.timestamp())).rowcount
        return changed > 0

    # Flap detection --------------------------------------------------------------------

    def flap_records(self) -> dict[str, FlapRecord]:
        rows = self._db.execute("SELECT fingerprint, changes, flapping_since FROM flaps")
        return {r[0]: FlapRecord(tuple(_at(at) for at in json.loads(r[1])), _dt(r[2]))
                for r in rows}

    @_writes
    def save_flaps(self, db: Connection, changed: Mapping[str, FlapRecord],
                   removed: Iterable[str]) -> None:
        db.executemany("INSERT OR REPLACE INTO flaps VALUES (?, ?, ?)",
                       [(fp, json.dumps([at.timestamp() for at in r.changes]),
                         _ts(r.flapping_since)) for fp, r in changed.items()])
        db.executemany("DELETE FROM flaps WHERE fingerprint = ?", [(fp,) for fp in removed])

    # What pages show about nodes -------------------------------------------------------

    @_writes
    def record_events(self, db: Connection, events: Iterable[RecentEvent],
                      forget_before: datetime) -> None:
        """Keep events for pages (a repeated id is kept once); forget those before a time."""
        db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
                       [(e.cluster, e.id, e.at.timestamp(), e.node_id, e.text)
                        for e in events])
        db.execute("DELETE FROM events WHERE at < ?", (forget_before.timestamp(),))

    def recent_events(self, since: datetime) -> list[RecentEvent]:
        """Every cluster's events since a time, newest first."""
        rows = self._db.execute("SELECT cluster, id, at, node_id, text FROM events"
                                " WHERE at >= ? ORDER BY at DESC, id", (since.timestamp(),))
        return [RecentEvent(r[0], r[1], _at(r[2]), r[3], r[4]) for r in rows]

    @_writes
    def record_nodes(self, db: Connection, cluster: str,
                     nodes: Mapping[str, NodeInfo]) -> None:
        """Replace a cluster's node directory (node id to address and locality)."""
        db.execute("DELETE FROM nodes WHERE cluster = ?", (cluster,))
        db.executemany("INSERT INTO nodes VALUES (?, ?, ?, ?)",
                       [(cluster, node_id, n.address, json.dumps(dict(n.locality)))
                        for node_id, n in nodes.items()])

    def nodes(self) -> dict[tuple[str, str], NodeInfo]:
        """Every cluster's node directory, by (cluster, node id)."""
        rows = self._db.execute("SELECT cluster, node_id, address, locality FROM nodes")
        return {(r[0], r[1]): NodeInfo(r[2], json.loads(r[3])) for r in rows}


def _connect(path: Path | str) -> Connection:
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


def _add_missing_columns(db: Connection) -> None:
    for table, column, declaration in _ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _quick_check(db: Connection) -> None:
    problems = [row[0] for row in db.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise sqlite3.DatabaseError(f"the file is damaged: {'; '.join(problems[:3])}")


def _transaction(db: Connection, write: Callable[[Connection], T]) -> T:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = write(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite has already rolled back after some errors (disk full)
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    return result


def _unwritable(exc: sqlite3.Error) -> bool:
    """The file failed (locked, full, I/O, damaged), not the statement (a constraint)."""
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


def _copy_tables(source: Connection, db: Connection) -> None:
    """Replace the service's tables in `db` by those of `source` (the same schema)."""
    for table in _SERVICE_TABLES:
        rows = source.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 - a constant
        db.execute(f"DELETE FROM {table}")  # noqa: S608
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)  # noqa: S608


def _queue(db: Connection, entries: Iterable[OutboxEntry]) -> int:
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
