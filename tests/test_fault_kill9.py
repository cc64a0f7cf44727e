"""`kill -9` of `crdb-watchdog run` at each stage of an incident, then a restart.

A node of the simulated cluster dies (liveness TTL 1 s, polls every 300 ms) and the webhook
receiver records what is sent. Where a stage is "a notification decided but not yet
delivered", the receiver refuses (503) during the first life, so that the kill lands there
every time and not, by chance, a millisecond earlier or later. The outcome asserted is always
what the receiver got in the end: nothing paged twice, nothing lost, except the one duplicate
that at-least-once delivery allows when the kill lands while a receiver holds the request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e import Receiver, running_watchdog, wait_until, write_config
from watchdog.alerts import Alert, State
from watchdog.simulator import SimulatedCluster
from watchdog.store import Store

QUIET = 1.5  # seconds of rounds (every 300 ms) after the restart in which nothing more may come
FIRING = "[FIRING:1] NodeLivenessLost"
RESOLVED = "[RESOLVED:1] NodeLivenessLost"
FOR = "3s"
RULE = f"""\
rules:
  - alert: NodeLivenessLost
    source: nodes
    each: node
    when: node.liveness in ('UNAVAILABLE', 'DEAD')
    for: {FOR}
    severity: critical
    summary: "Node {{{{ node.node_id }}}} is {{{{ node.liveness }}}}"
"""


@pytest.fixture
def config(tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> Path:
    rules = tmp_path / "liveness.yaml"
    rules.write_text(RULE)
    return write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url,
                        rules=[str(rules)])


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Store]:
    """The service's state file, read as `crdb-watchdog status` reads it while it runs."""
    with closing(Store(tmp_path / "state.db")) as store:
        yield store


def alert(store: Store) -> Alert | None:
    return next(iter(store.load_alerts().values()), None)


def in_state(store: Store, state: State) -> Alert | None:
    found = alert(store)
    return found if found is not None and found.state is state else None


def restart_and_settle(config: Path, receiver: Receiver, expected: int) -> None:
    """A new life: wait for `expected` notifications in all, then a quiet spell."""
    with running_watchdog(config):
        wait_until(lambda: len(receiver.payloads) >= expected)
        time.sleep(QUIET)


def test_kill_9_while_pending_goes_on_with_the_same_for_and_pages_once(
        config: Path, cluster: SimulatedCluster, receiver: Receiver, state: Store) -> None:
    with running_watchdog(config) as watchdog:
        cluster.kill(2)
        pending = wait_until(lambda: in_state(state, State.PENDING))
        watchdog.kill9()
    assert receiver.payloads == []
    restart_and_settle(config, receiver, expected=1)
    assert receiver.titles() == [FIRING]
    fired = alert(state)
    assert fired is not None and fired.active_at == pending.active_at, "`for` started over"


def test_kill_9_just_after_firing_pages_once_after_the_restart(
        config: Path, cluster: SimulatedCluster, receiver: Receiver, state: Store) -> None:
    receiver.up = False
    with running_watchdog(config) as watchdog:
        cluster.kill(2)
        wait_until(lambda: in_state(state, State.FIRING))
        watchdog.kill9()
    receiver.up = True
    restart_and_settle(config, receiver, expected=1)
    assert receiver.titles() == [FIRING]


def test_kill_9_while_the_receiver_holds_the_page_sends_it_again_once(
        config: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    """The receiver has the page but never answered: the outbox still holds it, so it is
    sent again after the restart. At least once: exactly one duplicate, nothing more."""
    receiver.answering.clear()
    with running_watchdog(config) as watchdog:
        cluster.kill(2)
        wait_until(lambda: receiver.payloads)
        watchdog.kill9()
    receiver.answering.set()
    restart_and_settle(config, receiver, expected=2)
    assert receiver.titles() == [FIRING, FIRING]
    assert receiver.payloads[0] == receiver.payloads[1]


def test_kill_9_just_after_resolving_notifies_the_resolution_once(
        config: Path, cluster: SimulatedCluster, receiver: Receiver, state: Store) -> None:
    with running_watchdog(config) as watchdog:
        cluster.kill(2)
        wait_until(lambda: receiver.payloads)
        receiver.up = False
        cluster.revive(2)
        wait_until(lambda: in_state(state, State.RESOLVED))
        watchdog.kill9()
    receiver.up = True
    restart_and_settle(config, receiver, expected=2)
    assert receiver.titles() == [FIRING, RESOLVED]
