from typing import Any

from watchdog.config import RouteConfig
from watchdog.notify import group_key, routes_for

CRITICAL = {"alertname": "NodeLivenessLost", "cluster": "prod", "severity": "critical",
            "node_id": "1", "zone": "us-east1-b"}
WARNING = CRITICAL | {"alertname": "ClockOffsetHigh", "severity": "warning"}


def route(**fields: Any) -> RouteConfig:
    return RouteConfig.model_validate({"channels": ["oncall"], **fields})


def test_first_matching_route_wins() -> None:
    routes = [route(match={"severity": "critical"}), route(), route()]
    assert routes_for(CRITICAL, routes) == [routes[0]]
    assert routes_for(WARNING, routes) == [routes[1]]


def test_continue_lets_matching_go_on() -> None:
    routes = [route(match={"severity": "critical"}, **{"continue": True}),
              route(match={"cluster": "staging"}), route(match={"cluster": "prod"}), route()]
    assert routes_for(CRITICAL, routes) == [routes[0], routes[2]]


def test_match_requires_every_label() -> None:
    routes = [route(match={"severity": "critical", "cluster": "staging"})]
    assert routes_for(CRITICAL, routes) == []


def test_match_re_is_anchored() -> None:
    assert routes_for(CRITICAL, [route(match_re={"zone": "us-east1-.*"})])
    assert routes_for(CRITICAL, [route(match_re={"zone": "us-east1-b|eu-west1-a"})])
    assert not routes_for(CRITICAL, [route(match_re={"zone": "east1"})])
    assert not routes_for(CRITICAL, [route(match_re={"zone": "us-east1"})])


def test_missing_label_counts_as_empty() -> None:
    assert routes_for(CRITICAL, [route(match_re={"team": ".*"})])
    assert not routes_for(CRITICAL, [route(match={"team": "db"})])


def test_no_matching_route_means_no_route() -> None:
    assert routes_for(WARNING, [route(match={"severity": "critical"})]) == []


def test_group_key_is_the_route_index_and_the_group_by_values() -> None:
    by_name = route(group_by=["cluster", "alertname"])
    other_node = CRITICAL | {"node_id": "2"}
    assert group_key(0, by_name, CRITICAL) == '0:{cluster="prod",alertname="NodeLivenessLost"}'
    assert group_key(0, by_name, CRITICAL) == group_key(0, by_name, other_node)
    assert group_key(0, by_name, CRITICAL) != group_key(1, by_name, CRITICAL)
    assert group_key(0, by_name, CRITICAL) != group_key(0, by_name, WARNING)
    by_node = route(group_by=["node_id"])
    assert group_key(0, by_node, CRITICAL) != group_key(0, by_node, other_node)
    assert group_key(0, route(group_by=["team"]), CRITICAL) == '0:{team=""}'


def test_group_by_dots_puts_each_alert_on_its_own() -> None:
    every = route(group_by=["..."])
    assert group_key(0, every, CRITICAL) != group_key(0, every, CRITICAL | {"node_id": "2"})
    assert group_key(0, every, CRITICAL) == group_key(0, every, dict(reversed(CRITICAL.items())))
