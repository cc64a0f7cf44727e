"""The state file fails under `crdb-watchdog run`: locked, corrupt, on a full disk.

A pager must keep paging. Each case breaks the state file of a running (or starting) service,
kills a node of the simulated cluster, and asserts that the page reaches the receiver and the
log names the file and the fault. Where the fault clears (the lock is released, space is
freed), the state held in memory meanwhile is written back: a `kill -9` and a restart then
page nothing again.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e import Receiver, running_watchdog, wait_until, write_config
from watchdog.simulator import SimulatedCluster
from watchdog.store import Store

QUIET = 1.5  # seconds of rounds (every 300 ms) after a restart in which nothing may be sent
PAGE = "[FIRING:1] NodeLivenessLost"
WRITTEN_BACK = "the state store is writable again"


def polled(cluster: SimulatedCluster, times: int) -> bool:
    return cluster.counters()["requests"].get("nodes/", 0) >= times


def restarted_without_paging_again(config: Path, cluster: SimulatedCluster,
                                   receiver: Receiver) -> None:
    """A kill -9 and a restart page nothing again: what was held in memory was saved."""
    polls = cluster.counters()["requests"]["nodes/"]
    with running_watchdog(config):
        wait_until(lambda: polled(cluster, polls + 3))
        time.sleep(QUIET)
    assert receiver.titles() == [PAGE], "the state held in memory was not written back"


@pytest.fixture
def config(tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> Path:
    return write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url)


def test_a_locked_state_file_is_named_pages_still_go_out_and_state_is_saved_once_free(
        tmp_path: Path, config: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    state = tmp_path / "state.db"
    with running_watchdog(config) as watchdog, \
            closing(sqlite3.connect(state, isolation_level=None)) as other:
        wait_until(lambda: polled(cluster, 2))
        other.execute("BEGIN EXCLUSIVE")
        cluster.kill(2)
        wait_until(lambda: receiver.titles())
        wait_until(lambda: "database is locked" in watchdog.output())
        other.execute("ROLLBACK")
        wait_until(lambda: WRITTEN_BACK in watchdog.output())
        watchdog.kill9()
    assert f"ERROR watchdog.store: {state}: cannot write the state store: database is locked" \
        in watchdog.output()
    assert receiver.titles() == [PAGE]
    restarted_without_paging_again(config, cluster, receiver)


def test_a_corrupt_state_file_is_named_left_alone_and_pages_still_go_out(
        tmp_path: Path, config: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    state = tmp_path / "state.db"
    garbage = b"not a database, a disk's bad day " * 512
    state.write_bytes(garbage)
    with running_watchdog(config) as watchdog:
        wait_until(lambda: "state in memory only" in watchdog.output())
        cluster.kill(2)
        wait_until(lambda: receiver.titles())
    assert f"CRITICAL watchdog.store: {state}: cannot open the state store: file is not a " \
        "database" in watchdog.output()
    assert receiver.titles() == [PAGE]
    assert state.read_bytes() == garbage, "the damaged file must be kept for inspection"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a real file system that fills up (needs root, as in CI's container)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                           capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Write until the file system says it is full; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_named_pages_still_go_out_and_state_is_saved_once_freed(
        small_disk: Path, config: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    state = small_disk / "state.db"
    config.write_text(config.read_text().replace(f"state: {config.parent / 'state.db'}",
                                                 f"state: {state}"))
    with running_watchdog(config) as watchdog:
        wait_until(lambda: polled(cluster, 2))
        filler = fill(small_disk)
        cluster.kill(2)
        wait_until(lambda: receiver.titles())
        wait_until(lambda: "database or disk is full" in watchdog.output())
        filler.unlink()
        wait_until(lambda: WRITTEN_BACK in watchdog.output())
        watchdog.kill9()
    assert f"ERROR watchdog.store: {state}: cannot write the state store: database or disk " \
        "is full" in watchdog.output()
    assert receiver.titles() == [PAGE]
    restarted_without_paging_again(config, cluster, receiver)


def test_while_the_file_is_locked_a_write_does_not_wait_for_the_lock_again(
        tmp_path: Path) -> None:
    """The service's loop waits for a lock once, at the first failure: not on every write."""
    path = tmp_path / "state.db"
    with closing(Store(path, busy_timeout=0.25, keep_paging=True)) as store, \
            closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        started = time.perf_counter()
        for value in range(50):
            store.set_cursor("sim", "events", str(value))
        assert time.perf_counter() - started < 0.25 + 0.25
        assert store.cursor("sim", "events") == "49"
        assert store.fault is not None and "database is locked" in store.fault
