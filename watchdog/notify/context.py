"""What pages show about nodes, kept from what the service polls.

Each node's address and locality tiers (whatever tiers the cluster uses: `region`, `az`,
`rack`…), so that a health alert, which knows only a URL and a node id, still says where
the node is; and the recent events of nodes (restarts, joins, decommissions, unclean
shutdowns) and settings changes, so that a page says what happened around it. Other events
(schema changes and the like) are not about nodes and are not kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from watchdog.durations import format_duration
from watchdog.snapshot import Event, Item, Node
from watchdog.store import NodeInfo, RecentEvent, Store

RECENT = timedelta(hours=24)
"""How far back a page looks for events; older ones are forgotten."""

_NODE_KEYS = ("TargetNodeID", "NodeID")


class PollContext:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._directories: dict[str, dict[str, NodeInfo]] = {}

    def observe(self, cluster: str, items: Sequence[Item], now: datetime) -> None:
        """Keep what one poll says about nodes; no write when nothing changed."""
        nodes = {str(item.node_id): NodeInfo(item.address, dict(item.locality))
                 for item in items if isinstance(item, Node)}
        if nodes and nodes != self._directories.get(cluster):
            self._store.record_nodes(cluster, nodes)
            self._directories[cluster] = nodes
        events = [recent for item in items if isinstance(item, Event)
                  if (recent := recent_event(cluster, item)) is not None]
        if events:
            self._store.record_events(events, forget_before=now - RECENT)


def recent_event(cluster: str, event: Event) -> RecentEvent | None:
    """A node's event or a settings change, as a page shows it; None for other events."""
    node_id = next((event.info[key] for key in _NODE_KEYS if key in event.info), None)
    if node_id is None and event.event_type != "set_cluster_setting":
        return None
    return RecentEvent(cluster, event.unique_id, event.timestamp,
                       None if node_id is None else str(node_id), _text(event))


def _text(event: Event) -> str:
    """`node_restart (down 42s)`, `set_cluster_setting kv.x = 1`: the type and its gist."""
    info = event.info
    if event.event_type == "set_cluster_setting":
        value = info.get("Value")
        shown = f" = {value}" if value not in (None, "", "<hidden>") else ""
        return f"set_cluster_setting {info.get('SettingName', '?')}{shown}"
    started, last_up = info.get("StartedAt"), info.get("LastUp")
    if event.event_type == "node_restart" and isinstance(started, int | float) \
            and isinstance(last_up, int | float):
        down = timedelta(seconds=max(0, round((started - last_up) / 1e9)))
        return f"node_restart (down {format_duration(down)})"
    if "RequestingNodeID" in info:
        return f"{event.event_type} (requested by node {info['RequestingNodeID']})"
    return event.event_type
