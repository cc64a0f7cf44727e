"""The simulated cluster, spoken to over real HTTP as the watchdog will."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from watchdog.simulator import SimConfig, SimulatedCluster

API = "/api/v2/"
SESSION = "X-Cockroach-API-Session"
INTERNAL_ERROR = ("An internal server error has occurred. "
                  "Please check your CockroachDB logs for more details.\n")

DATA = Path(__file__).parent / "data"  # the reference fixtures (23.2 shapes)
FIXTURE_NODE = json.loads((DATA / "nodes_3_live.json").read_text())["nodes"][0]
FIXTURE_EVENT = json.loads((DATA / "events.json").read_text())["events"][0]
FIXTURE_HOT_RANGE = json.loads((DATA / "ranges_hot.json").read_text())["ranges"][0]


@pytest.fixture
def cluster() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(SimConfig(nodes=3)) as sim:
        yield sim


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=2.0) as http:
        yield http


def login(cluster: SimulatedCluster, client: httpx.Client, node: int = 1) -> dict[str, str]:
    response = client.post(f"{cluster.url(node)}{API}login/",
                           data={"username": "root", "password": "secret"})
    assert response.status_code == 200
    return {SESSION: response.json()["session"]}


def get(cluster: SimulatedCluster, client: httpx.Client, path: str, node: int = 1,
        headers: dict[str, str] | None = None) -> httpx.Response:
    return client.get(f"{cluster.url(node)}{API}{path}", headers=headers)


def nodes(cluster: SimulatedCluster, client: httpx.Client, auth: dict[str, str],
          node: int = 1) -> dict[int, dict[str, Any]]:
    response = get(cluster, client, "nodes/", node, auth)
    assert response.status_code == 200
    return {entry["node_id"]: entry for entry in response.json()["nodes"] or []}


def assert_go_error(response: httpx.Response, status: int, body: str) -> None:
    assert response.status_code == status
    assert response.text == body
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"


# --- login and sessions -------------------------------------------------------------------


def test_login_returns_a_base64_session_cookie(cluster, client):
    response = client.post(f"{cluster.urls[0]}{API}login/",
                           data={"username": "root", "password": "secret"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    token = response.json()["session"]
    assert len(token) == 40
    cookie = base64.b64decode(token, validate=True)
    assert cookie[0] == 0x08  # protobuf field 1, varint: the session id
    assert cookie[-18:-16] == b"\x12\x10"  # field 2: a 16-byte secret


def test_login_username_is_case_insensitive(cluster, client):
    response = client.post(f"{cluster.urls[0]}{API}login/",
                           data={"username": "ROOT", "password": "secret"})
    assert response.status_code == 200


def test_login_with_wrong_password_is_401_text(cluster, client):
    response = client.post(f"{cluster.urls[0]}{API}login/",
                           data={"username": "root", "password": "nope"})
    assert_go_error(response, 401,
                    "the provided credentials did not match any account on the server\n")


def test_login_without_username_is_400(cluster, client):
    response = client.post(f"{cluster.urls[0]}{API}login/", data={"password": "secret"})
    assert_go_error(response, 400, "username not specified\n")


def test_login_other_than_post_is_404(cluster, client):
    response = get(cluster, client, "login/?username=root&password=secret")
    assert_go_error(response, 404, "not found\n")


def test_data_endpoint_without_session_header_is_401(cluster, client):
    assert_go_error(get(cluster, client, "nodes/"), 401, "invalid session header\n")


def test_session_header_that_is_not_base64_is_400(cluster, client):
    response = get(cluster, client, "nodes/", headers={SESSION: "not base64!"})
    assert_go_error(response, 400, "invalid session header\n")


def test_unknown_session_is_401(cluster, client):
    response = get(cluster, client, "nodes/",
                   headers={SESSION: "CIGA5+yDwtKaDRIQZ2EzmS06PyLCFkC6Yoevsw=="})
    assert_go_error(response, 401, "the provided authentication session could not be validated\n")


def test_session_works_on_every_node(cluster, client):
    auth = login(cluster, client, node=1)
    assert all(get(cluster, client, "nodes/", n, auth).status_code == 200 for n in (1, 2, 3))


def test_revoked_admin_gets_403_on_admin_endpoints_only(cluster, client):
    auth = login(cluster, client)
    cluster.revoke_admin()
    for path in ("nodes/", "events/", "ranges/hot/"):
        assert_go_error(get(cluster, client, path, headers=auth), 403,
                        "user not allowed to access this endpoint\n")
    assert get(cluster, client, "health/").status_code == 200
    cluster.revoke_admin(on=False)
    assert get(cluster, client, "nodes/", headers=auth).status_code == 200


def test_logout_invalidates_the_session(cluster, client):
    auth = login(cluster, client)
    response = client.post(f"{cluster.urls[0]}{API}logout/", headers=auth)
    assert response.json() == {"logged_out": True}
    assert get(cluster, client, "nodes/", headers=auth).status_code == 401
    again = client.post(f"{cluster.urls[0]}{API}logout/", headers=auth)
    assert_go_error(again, 400, "invalid session\n")


def test_expire_sessions_invalidates_every_token_until_login(cluster, client):
    auth = login(cluster, client)
    cluster.expire_sessions()
    assert_go_error(get(cluster, client, "nodes/", headers=auth), 401,
                    "the provided authentication session could not be validated\n")
    assert get(cluster, client, "nodes/", headers=login(cluster, client)).status_code == 200


def test_session_expires_after_session_ttl():
    with SimulatedCluster(SimConfig(session_ttl=60)) as cluster, httpx.Client() as client:
        auth = login(cluster, client)
        cluster.advance(59)
        assert get(cluster, client, "nodes/", headers=auth).status_code == 200
        cluster.advance(1)
        assert get(cluster, client, "nodes/", headers=auth).status_code == 401


def test_set_password_changes_the_login_but_keeps_sessions(cluster, client):
    auth = login(cluster, client)
    cluster.set_password("new-secret")
    old = client.post(f"{cluster.urls[0]}{API}login/",
                      data={"username": "root", "password": "secret"})
    assert old.status_code == 401
    new = client.post(f"{cluster.urls[0]}{API}login/",
                      data={"username": "root", "password": "new-secret"})
    assert new.status_code == 200
    assert get(cluster, client, "nodes/", headers=auth).status_code == 200


# --- routing and health -------------------------------------------------------------------


def test_paths_without_trailing_slash_are_404_page_not_found(cluster, client):
    auth = login(cluster, client)
    for path in ("nodes", "events", "ranges/hot", "health", "no-such-thing/"):
        assert_go_error(get(cluster, client, path, headers=auth), 404, "404 page not found\n")


def test_health_needs_no_auth_and_answers_empty_object(cluster, client):
    for node in (1, 2, 3):
        response = get(cluster, client, "health/", node)
        assert response.status_code == 200
        assert response.text == "{}"
    assert get(cluster, client, "health/?ready=true").text == "{}"


def test_health_rejects_a_ready_value_go_cannot_parse(cluster, client):
    assert_go_error(get(cluster, client, "health/?ready=yes"), 400, "invalid ready value\n")
    assert get(cluster, client, "health/?ready=0").status_code == 200


def test_drain_fails_readiness_with_generic_500_and_liveness_draining(cluster, client):
    auth = login(cluster, client)
    cluster.drain(2)
    assert_go_error(get(cluster, client, "health/?ready=true", 2), 500, INTERNAL_ERROR)
    assert get(cluster, client, "health/", 2).status_code == 200
    assert nodes(cluster, client, auth)[2]["liveness_status"] == 6
    cluster.undrain(2)
    assert get(cluster, client, "health/?ready=1", 2).status_code == 200
    assert cluster.liveness(2) == "LIVE"


# --- /nodes/ ------------------------------------------------------------------------------


def test_nodes_entries_have_the_fixture_shape(cluster, client):
    auth = login(cluster, client)
    response = get(cluster, client, "nodes/", headers=auth)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["nodes"]
    for node_id, entry in enumerate(body["nodes"], start=1):
        assert list(entry) == list(FIXTURE_NODE)
        assert entry["node_id"] == node_id
        assert set(entry["metrics"]) == set(FIXTURE_NODE["metrics"])
        assert list(entry["store_metrics"]) == [str(node_id)]
        assert set(entry["store_metrics"][str(node_id)]) == set(
            FIXTURE_NODE["store_metrics"]["1"])
        for key in ("address", "sql_address", "locality", "ServerVersion"):
            assert list(entry[key]) == list(FIXTURE_NODE[key])
        assert entry["liveness_status"] == 3
        assert entry["ServerVersion"] == {"major_val": 23, "minor_val": 2, "patch": 0,
                                          "internal": 0}
        assert entry["address"]["network_field"] == "tcp"
        assert isinstance(entry["started_at"], int) and entry["started_at"] > 1.7e18
        assert isinstance(entry["updated_at"], int)
        assert entry["metrics"]["liveness.livenodes"] == 3
    zones = [entry["locality"]["tiers"][1]["value"] for entry in body["nodes"]]
    assert zones == ["us-east1-b", "us-east1-c", "us-east1-d"]


def test_metrics_are_realistic(cluster, client):
    entry = nodes(cluster, client, login(cluster, client))[1]
    metrics = entry["metrics"]
    assert 0 < metrics["sys.fd.open"] / metrics["sys.fd.softlimit"] < 0.8
    assert 0 < metrics["clock-offset.meannanos"] < 300_000_000
    now = entry["started_at"] // 10**9
    assert metrics["security.certificate.expiration.node"] - now == 365 * 86400
    assert metrics["security.certificate.expiration.ca"] > metrics[
        "security.certificate.expiration.node"]
    assert metrics["security.certificate.expiration.client-ca"] == 0


def test_store_metrics_absent_when_simulating_23_1():
    config = SimConfig(store_metrics=False, build_tag="v23.1.11")
    with SimulatedCluster(config) as cluster, httpx.Client() as client:
        entry = nodes(cluster, client, login(cluster, client))[1]
        assert "store_metrics" not in entry
        assert entry["ServerVersion"]["minor_val"] == 1
        assert entry["build_tag"] == "v23.1.11"


def test_localities_and_stores_per_node_are_configurable():
    config = SimConfig(nodes=2, stores_per_node=2, localities=[{"region": "eu-west1"}])
    with SimulatedCluster(config) as cluster, httpx.Client() as client:
        listed = nodes(cluster, client, login(cluster, client))
        assert list(listed[2]["store_metrics"]) == ["3", "4"]
        assert listed[2]["locality"] == {"tiers": [{"key": "region", "value": "eu-west1"}]}
    with SimulatedCluster(SimConfig(localities=[])) as cluster, httpx.Client() as client:
        assert nodes(cluster, client, login(cluster, client))[1]["locality"] == {"tiers": None}


def test_nodes_pagination_omits_next_at_the_end(cluster, client):
    auth = login(cluster, client)
    first = get(cluster, client, "nodes/?limit=2", headers=auth).json()
    assert [n["node_id"] for n in first["nodes"]] == [1, 2]
    assert first["next"] == 2
    last = get(cluster, client, "nodes/?limit=2&offset=2", headers=auth).json()
    assert [n["node_id"] for n in last["nodes"]] == [3]
    assert "next" not in last
    exact = get(cluster, client, "nodes/?limit=3", headers=auth).json()
    assert "next" not in exact
    beyond = get(cluster, client, "nodes/?limit=2&offset=9", headers=auth).json()
    assert beyond == {"nodes": None}


def test_status_record_is_rewritten_every_status_interval(cluster, client):
    auth = login(cluster, client)
    before = nodes(cluster, client, auth)[1]
    cluster.advance(9.9)
    assert nodes(cluster, client, auth)[1]["updated_at"] == before["updated_at"]
    cluster.advance(0.1)
    after = nodes(cluster, client, auth)[1]
    assert after["updated_at"] == before["updated_at"] + 10 * 10**9
    assert after["metrics"]["sys.uptime"] == 10
    assert after["metrics"]["sql.query.count"] > before["metrics"]["sql.query.count"]


def test_set_metric_store_metric_and_build_tag_show_in_nodes(cluster, client):
    auth = login(cluster, client)
    cluster.set_metric(1, "clock-offset.meannanos", 350_000_000)
    cluster.set_store_metric(2, 2, "ranges.unavailable", 4)
    cluster.set_build_tag(3, "v23.2.5")
    listed = nodes(cluster, client, auth)
    assert listed[1]["metrics"]["clock-offset.meannanos"] == 350_000_000
    assert listed[2]["store_metrics"]["2"]["ranges.unavailable"] == 4
    assert listed[3]["build_tag"] == "v23.2.5"
    with pytest.raises(ValueError, match="stores"):
        cluster.set_store_metric(2, 9, "ranges.unavailable", 1)


# --- liveness and process faults ----------------------------------------------------------


def test_kill_refuses_connections_and_liveness_expires_then_dies(cluster, client):
    auth = login(cluster, client)
    cluster.kill(2)
    with pytest.raises(httpx.ConnectError):
        get(cluster, client, "health/", 2)
    assert nodes(cluster, client, auth)[2]["liveness_status"] == 3  # record not expired yet
    cluster.advance(9)
    assert nodes(cluster, client, auth)[2]["liveness_status"] == 2
    assert nodes(cluster, client, auth)[1]["metrics"]["liveness.livenodes"] == 2
    cluster.advance(300)
    assert nodes(cluster, client, auth)[2]["liveness_status"] == 1
    assert cluster.liveness(2) == "DEAD"


def test_killed_node_status_record_freezes(cluster, client):
    auth = login(cluster, client)
    cluster.advance(25)
    before = nodes(cluster, client, auth)
    cluster.kill(2)
    cluster.advance(400)
    after = nodes(cluster, client, auth)
    assert after[2]["updated_at"] == before[2]["updated_at"]
    assert after[2]["metrics"] == before[2]["metrics"]
    assert after[1]["updated_at"] > before[1]["updated_at"]
    assert after[1]["store_metrics"]["1"]["ranges.underreplicated"] > 0


def test_kill_also_cuts_pooled_keep_alive_connections(cluster, client):
    assert get(cluster, client, "health/", 2).status_code == 200  # leaves a pooled connection
    cluster.kill(2)
    with pytest.raises(httpx.ConnectError):  # the pool saw it close and dialled again
        get(cluster, client, "health/", 2)


def test_restart_is_a_kill_and_revive_in_one_step(cluster, client):
    cluster.restart(3)
    assert get(cluster, client, "health/", 3).status_code == 200
    events = get(cluster, client, "events/?type=node_restart",
                 headers=login(cluster, client)).json()["events"]
    assert [event["reporting_id"] for event in events] == [3]


def test_revive_restarts_with_new_started_at_and_node_restart_event(cluster, client):
    auth = login(cluster, client)
    port = cluster.url(2)
    started = nodes(cluster, client, auth)[2]["started_at"]
    cluster.kill(2)
    cluster.advance(60)
    cluster.revive(2)
    assert cluster.url(2) == port
    assert get(cluster, client, "health/?ready=true", 2).status_code == 200
    entry = nodes(cluster, client, auth)[2]
    assert entry["started_at"] - started >= 60 * 10**9
    assert entry["liveness_status"] == 3
    assert entry["metrics"]["sys.uptime"] == 0
    event = get(cluster, client, "events/?type=node_restart", headers=auth).json()["events"][0]
    info = json.loads(event["info"])
    assert event["reporting_id"] == 2
    assert info["NodeID"] == 2 and info["StartedAt"] == entry["started_at"]
    assert info["StartedAt"] - info["LastUp"] >= 60 * 10**9


def test_revive_of_a_running_node_is_refused(cluster):
    with pytest.raises(ValueError, match="not down"):
        cluster.revive(1)


def test_cut_off_refuses_connections_but_cluster_says_live(cluster, client):
    auth = login(cluster, client)
    cluster.cut_off(3)
    with pytest.raises(httpx.ConnectError):
        get(cluster, client, "health/", 3)
    cluster.advance(400)
    entry = nodes(cluster, client, auth)[3]
    assert entry["liveness_status"] == 3
    hot = get(cluster, client, "ranges/hot/", headers=auth).json()
    assert "response_error" not in hot
    cluster.cut_off(3, on=False)
    assert get(cluster, client, "health/", 3).status_code == 200


def test_stalled_status_record_stops_moving_while_live(cluster, client):
    auth = login(cluster, client)
    cluster.stall_status(1)
    before = nodes(cluster, client, auth)[1]["updated_at"]
    cluster.advance(60)
    entry = nodes(cluster, client, auth)[1]
    assert entry["updated_at"] == before
    assert entry["liveness_status"] == 3


def test_decommission_emits_events_and_removes_the_node(cluster, client):
    auth = login(cluster, client)
    cluster.decommission(3)
    assert nodes(cluster, client, auth)[3]["liveness_status"] == 4
    cluster.advance(30)
    assert 3 not in nodes(cluster, client, auth)
    assert cluster.liveness(3) == "DECOMMISSIONED"
    events = get(cluster, client, "events/?limit=2", headers=auth).json()["events"]
    assert [e["event_type"] for e in events] == ["node_decommissioned", "node_decommissioning"]
    assert json.loads(events[0]["info"])["TargetNodeID"] == 3
    assert json.loads(events[0]["info"])["RequestingNodeID"] == 1


def test_recommission_cancels_a_running_decommission(cluster, client):
    auth = login(cluster, client)
    cluster.decommission(2)
    cluster.recommission(2)
    cluster.advance(60)
    assert nodes(cluster, client, auth)[2]["liveness_status"] == 3
    newest = get(cluster, client, "events/?limit=1", headers=auth).json()["events"][0]
    assert newest["event_type"] == "node_recommissioned"


def test_injected_clock_drives_liveness():
    now = [1000.0]
    with SimulatedCluster(SimConfig(liveness_ttl=6), clock=lambda: now[0]) as cluster:
        cluster.kill(1)
        now[0] += 5.9
        assert cluster.liveness(1) == "LIVE"
        now[0] += 0.1
        assert cluster.liveness(1) == "UNAVAILABLE"


# --- /events/ -----------------------------------------------------------------------------


def test_events_start_with_node_joins_and_info_is_a_sorted_json_string(cluster, client):
    body = get(cluster, client, "events/", headers=login(cluster, client)).json()
    assert "next" not in body
    assert [e["event_type"] for e in body["events"]] == ["node_join"] * 3
    event = body["events"][0]
    assert list(event) == list(FIXTURE_EVENT)
    assert event["timestamp"].endswith("Z")
    assert len(base64.b64decode(event["unique_id"])) == 16
    assert isinstance(event["info"], str)
    info = json.loads(event["info"])
    assert list(info) == sorted(info)
    assert set(info) == {"EventType", "LastUp", "NodeID", "StartedAt", "Timestamp"}


def test_events_page_newest_first_with_next_whenever_full(cluster, client):
    auth = login(cluster, client)
    ids = [cluster.add_event("create_database", {"DatabaseName": f"db{i}"}) for i in range(3)]
    first = get(cluster, client, "events/?limit=2", headers=auth).json()
    assert [e["unique_id"] for e in first["events"]] == [ids[2], ids[1]]
    assert first["next"] == 2
    second = get(cluster, client, "events/?limit=2&offset=2", headers=auth).json()
    assert second["events"][0]["unique_id"] == ids[0]
    assert second["next"] == 4  # full page: next present though only node joins remain
    last = get(cluster, client, "events/?limit=2&offset=4", headers=auth).json()
    assert len(last["events"]) == 2 and last["next"] == 6
    empty = get(cluster, client, "events/?limit=2&offset=6", headers=auth).json()
    assert empty == {"events": None}


def test_events_filter_by_type_and_hide_statements(cluster, client):
    cluster.add_event("set_cluster_setting", {"SettingName": "server.time_until_store_dead",
                                              "Statement": "SET CLUSTER SETTING x = 1",
                                              "Value": "10m"})
    response = get(cluster, client, "events/?type=set_cluster_setting",
                   headers=login(cluster, client))
    assert '\\\\u003chidden\\\\u003e' in response.text  # Go escapes < and > in the info string
    events = response.json()["events"]
    assert len(events) == 1
    info = json.loads(events[0]["info"])
    assert info["Statement"] == "<hidden>" and info["Value"] == "<hidden>"


# --- /ranges/hot/ -------------------------------------------------------------------------


def test_hot_ranges_without_limit_return_everything_and_the_empty_token(cluster, client):
    body = get(cluster, client, "ranges/hot/", headers=login(cluster, client)).json()
    assert body["next"] == "fDB8MHw="
    assert "response_error" not in body
    assert len(body["ranges"]) == 9
    assert list(body["ranges"][0]) == list(FIXTURE_HOT_RANGE)
    assert [r["node_id"] for r in body["ranges"]] == [1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_hot_ranges_page_through_to_an_empty_page(cluster, client):
    auth = login(cluster, client)
    seen: list[int] = []
    tokens: list[str] = []
    start = ""
    while True:
        body = get(cluster, client, f"ranges/hot/?limit=4&start={start}", headers=auth).json()
        tokens.append(base64.urlsafe_b64decode(body["next"]).decode())
        if not body["ranges"]:
            break
        seen += [r["range_id"] for r in body["ranges"]]
        start = body["next"]
    assert sorted(seen) == [70, 71, 72, 80, 81, 82, 90, 91, 92]
    assert tokens == ["1,|2|1|3,", "1,2,|3|2|", "1,2,3,|0|0|", "1,2,3,|0|0|"]


def test_hot_ranges_report_a_dead_node_as_response_error(cluster, client):
    auth = login(cluster, client)
    cluster.kill(2)
    cluster.advance(400)
    body = get(cluster, client, "ranges/hot/", headers=auth).json()
    assert body["response_error"] == [{
        "error_message": "failed to dial into node 2 (NODE_STATUS_DEAD): "
                         "unable to dial n2: breaker open",
        "node_id": 2}]
    assert {r["node_id"] for r in body["ranges"]} == {1, 3}


def test_hot_ranges_node_id_filter_needs_a_limit_and_a_valid_id(cluster, client):
    auth = login(cluster, client)
    only = get(cluster, client, "ranges/hot/?node_id=3&limit=10", headers=auth).json()
    assert {r["node_id"] for r in only["ranges"]} == {3}
    local = get(cluster, client, "ranges/hot/?node_id=local&limit=10", 2, auth).json()
    assert {r["node_id"] for r in local["ranges"]} == {2}
    ignored = get(cluster, client, "ranges/hot/?node_id=3", headers=auth).json()
    assert len(ignored["ranges"]) == 9
    assert_go_error(get(cluster, client, "ranges/hot/?node_id=x", headers=auth), 400,
                    "invalid node ID\n")


def test_added_hot_range_is_reported_busiest_first(cluster, client):
    cluster.add_hot_range(500, 1, cpu_time_per_second=900_000_000, qps=5000.0)
    body = get(cluster, client, "ranges/hot/?node_id=1&limit=1",
               headers=login(cluster, client)).json()
    hot = body["ranges"][0]
    assert hot["range_id"] == 500
    assert hot["cpu_time_per_second"] == 900_000_000
    assert hot["replica_node_ids"] == [1, 2, 3]
    cluster.clear_hot_ranges()
    empty = get(cluster, client, "ranges/hot/", headers=login(cluster, client)).json()
    assert empty["ranges"] is None


# --- injected faults ----------------------------------------------------------------------


def test_fault_status500_answers_generic_internal_error(cluster, client):
    cluster.inject(1, "status500")
    assert_go_error(get(cluster, client, "health/"), 500, INTERNAL_ERROR)
    assert get(cluster, client, "health/", 2).status_code == 200


def test_fault_hang_delays_the_answer(cluster, client):
    cluster.inject(1, "hang", seconds=5)
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{cluster.urls[0]}{API}health/", timeout=0.2)
    cluster.inject(1, "hang", seconds=0.05)
    assert get(cluster, client, "health/").status_code == 200


def test_fault_garbage_is_200_json_that_does_not_parse(cluster, client):
    cluster.inject(None, "garbage")
    response = get(cluster, client, "nodes/", 3)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_fault_drop_closes_without_answer(cluster, client):
    cluster.inject(2, "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        get(cluster, client, "health/", 2)


def test_fault_path_filter_and_clearing(cluster, client):
    auth = login(cluster, client)
    cluster.inject(1, "status500", path="nodes/")
    assert get(cluster, client, "nodes/", headers=auth).status_code == 500
    assert get(cluster, client, "health/").status_code == 200
    cluster.inject(1, None)
    assert get(cluster, client, "nodes/", headers=auth).status_code == 200
    with pytest.raises(ValueError, match="unknown fault"):
        cluster.inject(1, "explode")


# --- control API, counters, serve() -------------------------------------------------------


def test_control_api_drives_kill_revive_and_reports_state(cluster, client):
    control = cluster.control_url
    assert client.post(f"{control}/control/kill", json={"node_id": 2}).json() == {
        "ok": True, "result": None}
    with pytest.raises(httpx.ConnectError):
        get(cluster, client, "health/", 2)
    client.post(f"{control}/control/advance", json={"seconds": 10})
    state = client.get(f"{control}/control/state").json()
    node2 = state["nodes"][1]
    assert (node2["up"], node2["listening"], node2["liveness"]) == (False, False, "UNAVAILABLE")
    client.post(f"{control}/control/revive", json={"node_id": 2})
    assert get(cluster, client, "health/", 2).status_code == 200
    added = client.post(f"{control}/control/add_event",
                        json={"event_type": "create_table", "info": {"TableName": "t"}}).json()
    assert len(base64.b64decode(added["result"])) == 16


def test_control_api_errors_are_json(cluster, client):
    control = cluster.control_url
    unknown_node = client.post(f"{control}/control/kill", json={"node_id": 9})
    assert unknown_node.status_code == 400
    assert "no node 9" in unknown_node.json()["error"]
    bad_args = client.post(f"{control}/control/kill", json={"node": 1})
    assert bad_args.status_code == 400
    assert client.post(f"{control}/control/stop", json={}).status_code == 404
    not_json = client.post(f"{control}/control/kill", content=b"{")
    assert not_json.status_code == 400


def test_counters_count_requests_per_node_and_path_and_logins(cluster, client):
    auth = login(cluster, client)
    get(cluster, client, "nodes/", 1, auth)
    get(cluster, client, "nodes/", 2, auth)
    get(cluster, client, "health/", 2)
    counters = cluster.counters()
    assert counters["logins"] == 1
    assert counters["requests"] == {"login/": 1, "nodes/": 2, "health/": 1}
    assert counters["by_node"]["2"] == {"health/": 1, "nodes/": 1}
    cluster.reset_counters()
    assert cluster.counters() == {"logins": 0, "requests": {}, "by_node": {}}


def test_serve_prints_urls_and_stops_on_sigterm():
    code = "from watchdog.simulator import SimConfig, serve; serve(SimConfig(nodes=2))"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        lines = [process.stdout.readline() for _ in range(5)]
        assert lines[1].startswith("node 1: http://127.0.0.1:")
        assert lines[3].startswith("control: http://")
        assert lines[4] == "login: root / secret\n"
        url = lines[2].split(": ", 1)[1].strip()
        assert httpx.get(f"{url}{API}health/").status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
