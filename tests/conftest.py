"""Shared fixtures: the reference API responses, copied into tests/data/."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import Receiver
from watchdog.alerts import Alert, State
from watchdog.simulator import SimConfig, SimulatedCluster
from watchdog.store import Store

DATA = Path(__file__).parent / "data"


def fixture_json(name: str) -> Any:
    return json.loads((DATA / name).read_text())


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A state store in a fresh file."""
    state = Store(tmp_path / "state.db")
    yield state
    state.close()


# End-to-end tests: a simulated cluster and a webhook receiver ----------------------------


@pytest.fixture
def cluster() -> Iterator[SimulatedCluster]:
    """Three simulated nodes whose liveness expires 1 s after a kill (9 s in CockroachDB)."""
    with SimulatedCluster(SimConfig(nodes=3, liveness_ttl=1.0)) as sim:
        yield sim


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver behind `json://`, recording every notification."""
    hook = Receiver()
    yield hook
    hook.close()


# Notify pipeline (tests/test_notify_*.py) ----------------------------------------------

NOTIFY_T0 = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)


def _alert(name: str = "NodeLivenessLost", node_id: str | None = "1", *,
           state: State = State.FIRING, severity: str = "critical", cluster: str = "prod",
           fired_at: datetime = NOTIFY_T0, resolved_at: datetime | None = None,
           summary: str | None = None, **labels: str) -> Alert:
    """An alert as the tracker holds it; node alerts carry an address and a locality."""
    base = {"alertname": name, "cluster": cluster, "severity": severity}
    if node_id is not None:
        base |= {"node_id": node_id, "address": f"crdb-{node_id}:26257",
                 "region": "us-east1", "zone": "us-east1-b"}
    summary = summary or (f"Node {node_id} is UNAVAILABLE" if node_id else f"{name} in {cluster}")
    return Alert(base | labels, {"summary": summary}, state, active_at=fired_at,
                 last_true_at=fired_at, fired_at=fired_at, resolved_at=resolved_at)


@pytest.fixture
def make_alert() -> Callable[..., Alert]:
    return _alert
