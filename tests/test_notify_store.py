"""The notify pipeline's part of the state store: what it added to a file from before."""

import sqlite3
from pathlib import Path

from watchdog.store import Store


def test_a_state_file_from_before_gets_the_new_columns(tmp_path: Path) -> None:
    """The notify pipeline added columns to the notification log and the outbox."""
    old = sqlite3.connect(tmp_path / "state.db")
    old.executescript("""
        CREATE TABLE nflog (group_key TEXT NOT NULL, channel TEXT NOT NULL, firing TEXT NOT NULL,
            resolved TEXT NOT NULL, sent_at REAL NOT NULL, PRIMARY KEY (group_key, channel));
        INSERT INTO nflog VALUES ('0:{}', 'hook', '["a"]', '[]', 0);
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,
            url TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
            body_format TEXT NOT NULL, notify_type TEXT NOT NULL, created_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, last_error TEXT);
        INSERT INTO outbox VALUES (1, 'hook', 'json://x', 't', 'b', 'text', 'info', 0, 0, 0, NULL);
    """)
    old.close()
    store = Store(tmp_path / "state.db")
    try:
        record = store.notify_record("0:{}", "hook")
        assert record is not None
        assert (record.firing, record.muted, record.flapping) == (frozenset({"a"}), set(), set())
        assert [entry.escalated for entry in store.outbox()] == [False]
    finally:
        store.close()
