"""What pages show about nodes: the directory and the recent events, kept from polls."""

from datetime import UTC, datetime, timedelta
from unittest import mock

from tests.conftest import fixture_json
from watchdog.notify.context import RECENT, PollContext, recent_event
from watchdog.snapshot import parse_events, parse_nodes
from watchdog.store import NodeInfo, Store

EVENTS = parse_events(fixture_json("events.json"))
NODES = parse_nodes(fixture_json("nodes_3_live.json"))
AFTER = datetime(2024, 3, 12, 10, 0, tzinfo=UTC)  # shortly after the recorded events


def test_node_and_setting_events_are_kept_with_their_gist() -> None:
    kept = [recent_event("prod", event) for event in EVENTS]
    assert [(e.node_id, e.text) if e else None for e in kept[:6]] == [
        None,  # create_database: not about a node
        ("3", "node_restart (down 56s)"),
        ("4", "node_decommissioned (requested by node 1)"),
        ("4", "node_decommissioning (requested by node 1)"),
        (None, "set_cluster_setting server.time_until_store_dead"),  # its value is hidden
        ("3", "node_join"),
    ]


def test_events_are_stored_once_and_forgotten_after_a_day(store: Store) -> None:
    context = PollContext(store)
    context.observe("prod", EVENTS, AFTER)
    context.observe("prod", EVENTS[:3], AFTER)
    assert [e.text for e in store.recent_events(AFTER - timedelta(minutes=70))] == [
        "node_restart (down 56s)", "node_decommissioned (requested by node 1)",
        "node_decommissioning (requested by node 1)",
        "set_cluster_setting server.time_until_store_dead"]
    context.observe("prod", EVENTS[:1], AFTER + RECENT)  # nothing kept: nothing pruned
    assert len(store.recent_events(AFTER - 2 * RECENT)) == 8
    context.observe("prod", EVENTS[1:2], AFTER + RECENT)
    assert store.recent_events(AFTER - 2 * RECENT) == []


def test_the_node_directory_is_written_only_when_it_changes(store: Store) -> None:
    context = PollContext(store)
    with mock.patch.object(store, "record_nodes", wraps=store.record_nodes) as record:
        for _ in range(3):
            context.observe("prod", NODES, AFTER)
        context.observe("prod", [], AFTER)  # a failed poll says nothing
        assert record.call_count == 1
        moved = [NODES[0], NODES[1]]
        context.observe("prod", moved, AFTER)
        assert record.call_count == 2
    assert store.nodes() == {
        ("prod", "1"): NodeInfo("crdb-1.example.internal:26257",
                                {"region": "us-east1", "az": "us-east1-b"}),
        ("prod", "2"): NodeInfo("crdb-2.example.internal:26257",
                                {"region": "us-east1", "az": "us-east1-c"})}

