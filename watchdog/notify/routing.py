"""Routing: which routes an alert goes to, and which group it joins on each.

Alertmanager's route tree, flattened to a list: routes are tried in order, the first match
wins, and a matching route with `continue: true` lets matching go on to the next ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from watchdog.config import LabelMatchers, RouteConfig


def matches(labels: Mapping[str, str], matchers: LabelMatchers) -> bool:
    """Every `match` label equal and every `match_re` regex matching; none given matches all.

    A missing label counts as the empty string, as in Alertmanager.
    """
    return (all(labels.get(name, "") == value for name, value in matchers.match.items())
            and all(pattern.fullmatch(labels.get(name, ""))
                    for name, pattern in matchers.match_re.items()))


def routes_for(labels: Mapping[str, str], routes: Sequence[RouteConfig]) -> list[RouteConfig]:
    """The routes an alert with these labels is notified on, in configuration order."""
    chosen = []
    for route in routes:
        if matches(labels, route):
            chosen.append(route)
            if not route.continue_:
                break
    return chosen


def group_key(index: int, route: RouteConfig, labels: Mapping[str, str]) -> str:
    """`<route index>:{label="value",…}` over the route's `group_by`: one notification each.

    `group_by: ["..."]` groups by every label, as in Alertmanager: each alert on its own.
    """
    names = sorted(labels) if "..." in route.group_by else route.group_by
    pairs = ",".join(f"{name}={json.dumps(labels.get(name, ''))}" for name in names)
    return f"{index}:{{{pairs}}}"
