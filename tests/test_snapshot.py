import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import fixture_json
from watchdog.snapshot import (
    PayloadError,
    dedupe_hot_ranges,
    parse_events,
    parse_hot_ranges,
    parse_nodes,
)


def test_nodes_are_normalised_to_names_datetimes_and_mappings() -> None:
    nodes = parse_nodes(fixture_json("nodes_1_dead.json"))
    assert [(n.node_id, n.liveness) for n in nodes] == [(1, "LIVE"), (2, "DEAD"), (3, "LIVE")]
    node = nodes[0]
    assert node.address == "crdb-1.example.internal:26257"
    assert node.sql_address == "crdb-1.example.internal:26257"
    assert dict(node.locality) == {"region": "us-east1", "az": "us-east1-b"}
    assert node.build_tag == "v23.2.2"
    assert node.started_at == datetime(2024, 3, 12, 4, 36, 47, 973145, tzinfo=UTC)
    assert node.updated_at is not None and node.updated_at.tzinfo is UTC
    assert node.metrics["sys.fd.softlimit"] > 0
    assert node.store_metrics is not None and node.store_metrics["1"]["capacity"] > 0
    assert node.raw["liveness_status"] == 3


def test_23_1_nodes_without_store_metrics_have_none_not_empty() -> None:
    body = fixture_json("nodes_3_live.json")
    for node in body["nodes"]:
        del node["store_metrics"]
    assert all(node.store_metrics is None for node in parse_nodes(body))


def test_null_node_list_and_missing_locality_are_accepted() -> None:
    assert parse_nodes({"nodes": None}) == []
    body = fixture_json("nodes_3_live.json")
    body["nodes"][0]["locality"] = {"tiers": None}
    assert parse_nodes(body)[0].locality == {}


def test_unknown_liveness_number_reads_as_unknown_not_live() -> None:
    body = fixture_json("nodes_3_live.json")
    body["nodes"][0]["liveness_status"] = 42
    assert parse_nodes(body)[0].liveness == "UNKNOWN"


@pytest.mark.parametrize(("change", "message"), [
    (lambda n: n.pop("node_id"), "nodes[0].node_id: missing"),
    (lambda n: n.update(liveness_status="LIVE"), "nodes[0].liveness_status: expected an integer"),
    (lambda n: n["metrics"].update({"sys.uptime": "12"}), "nodes[0].metrics.sys.uptime"),
])
def test_malformed_node_raises_payload_error_naming_the_field(
        change: Callable[[dict[str, Any]], Any], message: str) -> None:
    body = fixture_json("nodes_3_live.json")
    change(body["nodes"][0])
    with pytest.raises(PayloadError, match=re.escape(message)):
        parse_nodes(body)


def test_events_have_info_parsed_and_nanosecond_times() -> None:
    events = parse_events(fixture_json("events.json"))
    restart = next(e for e in events if e.event_type == "node_restart")
    assert restart.info["NodeID"] == 3
    assert restart.timestamp == datetime(2024, 3, 12, 9, 20, 2, 413000, tzinfo=UTC)
    assert restart.unique_id == "K5wdfg83xEkhvT9lZOrffw=="


def test_event_with_info_that_is_not_json_is_a_payload_error() -> None:
    body = {"events": [{"timestamp": "2024-03-12T09:20:02Z", "info": "{not json",
                        "unique_id": "x"}]}
    with pytest.raises(PayloadError, match=r"events\[0\]\.info"):
        parse_events(body)


def test_hot_ranges_keep_per_node_errors_apart_and_dedupe_by_range() -> None:
    ranges, errors = parse_hot_ranges(fixture_json("ranges_hot_node_down.json"))
    assert errors and errors[0][0] == 2
    assert "failed to dial into node 2" in errors[0][1]
    assert ranges[0].table == "users" and ranges[0].cpu_time_per_second > 0
    doubled = dedupe_hot_ranges(ranges + ranges)
    assert len(doubled) == len({r.range_id for r in ranges})
