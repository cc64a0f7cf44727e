"""Notification receivers down, then back: the page is delivered afterwards, exactly once.

`crdb-watchdog run` pages one channel with two URLs, a webhook (`json://`) and a mailbox
(`mailto://`, SMTP), while nothing listens on either port: connections are refused, as when
a receiver is down. Once both have refused several attempts they start on those ports.

"Down for a minute" is shortened to five failed attempts (about 3.5 s) by the test's retry
settings (`retry_initial: 200ms`, `retry_max: 1s`). A longer outage changes only the number
of attempts: with the defaults (1 s, doubling up to 5 min) a page waits at most the current
backoff after its receiver is back, 32 s after a one-minute outage.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.e2e import Receiver, running_watchdog, wait_until, write_config
from tests.test_notify_deliver import Mailbox, free_port
from watchdog.simulator import SimulatedCluster
from watchdog.store import Store

ATTEMPTS_WHILE_DOWN = 5
QUIET = 1.5  # seconds after delivery in which nothing more may arrive


def refused_often(store: Store) -> bool:
    """Both notifications (webhook and mail) queued and refused enough times."""
    entries = store.outbox()
    return len(entries) == 2 and all(e.attempts >= ATTEMPTS_WHILE_DOWN for e in entries)


def test_http_and_smtp_receivers_down_get_the_page_once_when_back(
        tmp_path: Path, cluster: SimulatedCluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mail.log")  # aiosmtpd's start-up self-check
    hook_port, mailbox = free_port(), Mailbox(free_port())
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls,
                          [f"json://127.0.0.1:{hook_port}/hook", mailbox.url()])
    with running_watchdog(config) as watchdog, closing(Store(tmp_path / "state.db")) as store:
        cluster.kill(2)
        wait_until(lambda: refused_often(store))
        hook, smtp = Receiver(hook_port), Controller(mailbox, hostname="127.0.0.1",
                                                     port=mailbox.port)
        smtp.start()
        try:
            wait_until(lambda: hook.payloads and mailbox.messages and not store.outbox())
            time.sleep(QUIET)
        finally:
            smtp.stop()
            hook.close()
    assert hook.titles() == ["[FIRING:1] NodeLivenessLost"]
    assert [message["Subject"] for message in mailbox.messages] == [
        "[FIRING:1] NodeLivenessLost"]
    assert watchdog.output().count("failed (attempt") >= 2 * ATTEMPTS_WHILE_DOWN
