"""A typed, normalised view of what one poll of the Cluster API returned.

The API speaks in wire encodings (enum integers, nanosecond epochs, `{tiers: [...]}`, JSON in
strings, base64 ids); rules speak in names, datetimes and mappings. Parsing is strict: a
payload that is not what the API documents raises PayloadError naming the field, which the
service reports as a source error for that round, never as "healthy".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any


class PayloadError(ValueError):
    """A response body that does not have the documented shape."""


class Liveness(IntEnum):
    """`livenesspb.NodeLivenessStatus`, sent as a bare integer by `/api/v2/nodes/`."""

    UNKNOWN = 0
    DEAD = 1
    UNAVAILABLE = 2
    LIVE = 3
    DECOMMISSIONING = 4
    DECOMMISSIONED = 5
    DRAINING = 6
    STARTING = 7


@dataclass(frozen=True, slots=True)
class Node:
    node_id: int
    liveness: str
    address: str
    sql_address: str
    locality: Mapping[str, str]
    build_tag: str
    started_at: datetime
    updated_at: datetime | None
    metrics: Mapping[str, float]
    store_metrics: Mapping[str, Mapping[str, float]] | None
    cluster_name: str
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def key(self) -> str:
        return str(self.node_id)


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """One store of a node (23.2+ `store_metrics`): rules about disks and ranges are per store."""

    store_id: str
    node_id: int
    metrics: Mapping[str, float]
    node: Node = field(repr=False)

    @property
    def key(self) -> str:
        return self.store_id


def stores_of(nodes: Sequence[Node]) -> list[StoreStatus]:
    """Every store of every node that reports them, in node then store order."""
    return [StoreStatus(store_id, node.node_id, metrics, node)
            for node in nodes if node.store_metrics
            for store_id, metrics in sorted(node.store_metrics.items(), key=_store_order)]


def _store_order(entry: tuple[str, Mapping[str, float]]) -> tuple[int, str]:
    return (int(entry[0]), entry[0]) if entry[0].isdigit() else (0, entry[0])


@dataclass(frozen=True, slots=True)
class HealthItem:
    """What one configured URL's own `/health/` and `/health/?ready=true` said."""

    url: str
    node_id: int | None
    ok: bool
    ready: bool
    status: int | None
    error: str | None
    latency: float | None

    @property
    def key(self) -> str:
        return self.url


@dataclass(frozen=True, slots=True)
class Event:
    unique_id: str
    timestamp: datetime
    event_type: str
    reporting_id: int | None
    info: Mapping[str, Any]
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def key(self) -> str:
        return self.unique_id


@dataclass(frozen=True, slots=True)
class HotRange:
    range_id: int
    node_id: int
    leaseholder_node_id: int
    qps: float
    cpu_time_per_second: float
    writes_per_second: float
    reads_per_second: float
    database: str
    table: str
    index: str
    replica_node_ids: tuple[int, ...]
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def key(self) -> str:
        return str(self.range_id)


Item = Node | StoreStatus | HealthItem | Event | HotRange


def parse_nodes(body: Any) -> list[Node]:
    """Parse a `/api/v2/nodes/` page: `{"nodes": [...] | null, "next": int?}`."""
    return [parse_node(raw, f"nodes[{i}]") for i, raw in enumerate(_list(body, "nodes"))]


def parse_node(raw: Any, where: str = "node") -> Node:
    obj = _mapping(raw, where)
    status = _int(obj, "liveness_status", where)
    try:
        liveness = Liveness(status).name
    except ValueError:
        liveness = Liveness.UNKNOWN.name
    store_metrics = obj.get("store_metrics")
    return Node(
        node_id=_int(obj, "node_id", where),
        liveness=liveness,
        address=_address(obj.get("address"), f"{where}.address"),
        sql_address=_address(obj.get("sql_address"), f"{where}.sql_address"),
        locality=_locality(obj.get("locality"), f"{where}.locality"),
        build_tag=_str(obj, "build_tag", where),
        started_at=_nanos(_int(obj, "started_at", where)),
        updated_at=_nanos(obj["updated_at"]) if obj.get("updated_at") else None,
        metrics=_metrics(obj.get("metrics"), f"{where}.metrics"),
        store_metrics=None if store_metrics is None else {
            str(store): _metrics(values, f"{where}.store_metrics.{store}")
            for store, values in _mapping(store_metrics, f"{where}.store_metrics").items()
        },
        cluster_name=_str(obj, "cluster_name", where, default=""),
        raw=obj,
    )


def parse_events(body: Any) -> list[Event]:
    """Parse a `/api/v2/events/` page; `info` (a JSON string) becomes a mapping."""
    return [parse_event(raw, f"events[{i}]") for i, raw in enumerate(_list(body, "events"))]


def parse_event(raw: Any, where: str = "event") -> Event:
    obj = _mapping(raw, where)
    info_text = obj.get("info") or "{}"
    try:
        info = json.loads(info_text) if isinstance(info_text, str) else None
    except json.JSONDecodeError:
        info = None
    if not isinstance(info, dict):
        raise PayloadError(f"{where}.info: expected a JSON object in a string")
    return Event(
        unique_id=_str(obj, "unique_id", where),
        timestamp=_rfc3339(_str(obj, "timestamp", where), f"{where}.timestamp"),
        event_type=_str(obj, "event_type", where, default=""),
        reporting_id=obj.get("reporting_id") if isinstance(obj.get("reporting_id"), int) else None,
        info=info,
        raw=obj,
    )


def parse_hot_ranges(body: Any) -> tuple[list[HotRange], list[tuple[int, str]]]:
    """Parse a `/api/v2/ranges/hot/` page: the ranges and the per-node `response_error`s."""
    ranges = [parse_hot_range(raw, f"ranges[{i}]") for i, raw in enumerate(_list(body, "ranges"))]
    errors = []
    for i, raw in enumerate(_list(body, "response_error")):
        obj = _mapping(raw, f"response_error[{i}]")
        errors.append((_int(obj, "node_id", f"response_error[{i}]"),
                       _str(obj, "error_message", f"response_error[{i}]", default="")))
    return ranges, errors


def parse_hot_range(raw: Any, where: str = "range") -> HotRange:
    obj = _mapping(raw, where)
    replicas = obj.get("replica_node_ids") or []
    if not isinstance(replicas, list) or not all(isinstance(r, int) for r in replicas):
        raise PayloadError(f"{where}.replica_node_ids: expected a list of node ids")
    return HotRange(
        range_id=_int(obj, "range_id", where),
        node_id=_int(obj, "node_id", where),
        leaseholder_node_id=_int(obj, "leaseholder_node_id", where, default=0),
        qps=_number(obj, "qps", where),
        cpu_time_per_second=_number(obj, "cpu_time_per_second", where),
        writes_per_second=_number(obj, "writes_per_second", where),
        reads_per_second=_number(obj, "reads_per_second", where),
        database=_name(obj, "database_name", "databases"),
        table=_name(obj, "table_name", "tables"),
        index=_name(obj, "index_name", "indexes"),
        replica_node_ids=tuple(replicas),
        raw=obj,
    )


def dedupe_hot_ranges(ranges: list[HotRange]) -> list[HotRange]:
    """One entry per range, preferring the leaseholder's report (several replicas report it)."""
    best: dict[int, HotRange] = {}
    for hot in ranges:
        seen = best.get(hot.range_id)
        if seen is None or (hot.node_id == hot.leaseholder_node_id
                            and seen.node_id != seen.leaseholder_node_id):
            best[hot.range_id] = hot
    return list(best.values())


def _name(obj: Mapping[str, Any], old: str, new: str) -> str:
    """23.x sends `table_name`; newer releases send a `tables` list."""
    if isinstance(obj.get(old), str):
        return str(obj[old])
    names = obj.get(new)
    return ",".join(str(n) for n in names) if isinstance(names, list) else ""


def _nanos(value: Any) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError(f"expected nanoseconds since the epoch, got {value!r}")
    return datetime.fromtimestamp(value / 1e9, tz=UTC)


def _rfc3339(text: str, where: str) -> datetime:
    """Go's RFC3339Nano has up to nine fractional digits; Python keeps six."""
    head, _, tail = text.rstrip("Z").partition(".")
    digits = "".join(ch for ch in tail if ch.isdigit())[:6]
    try:
        parsed = datetime.fromisoformat(f"{head}.{digits or '0'}")
    except ValueError:
        raise PayloadError(f"{where}: not an RFC 3339 time: {text!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _address(raw: Any, where: str) -> str:
    if raw is None:
        return ""
    return _str(_mapping(raw, where), "address_field", where, default="")


def _locality(raw: Any, where: str) -> dict[str, str]:
    tiers = _mapping(raw, where).get("tiers") if raw is not None else None
    if tiers is None:
        return {}
    if not isinstance(tiers, list):
        raise PayloadError(f"{where}.tiers: expected a list")
    return {str(_mapping(t, where).get("key")): str(t.get("value")) for t in tiers}


def _metrics(raw: Any, where: str) -> dict[str, float]:
    if raw is None:
        return {}
    obj = _mapping(raw, where)
    for name, value in obj.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise PayloadError(f"{where}.{name}: expected a number, got {type(value).__name__}")
    return dict(obj)


def _list(body: Any, key: str) -> list[Any]:
    value = _mapping(body, "response").get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{key}: expected a list, got {type(value).__name__}")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: expected an object, got {type(value).__name__}")
    return value


_MISSING: Any = object()


def _int(obj: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> int:
    value = obj.get(key, default)
    if value is _MISSING:
        raise PayloadError(f"{where}.{key}: missing")
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError(f"{where}.{key}: expected an integer, got {type(value).__name__}")
    return value


def _number(obj: Mapping[str, Any], key: str, where: str) -> float:
    value = obj.get(key, 0)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise PayloadError(f"{where}.{key}: expected a number, got {type(value).__name__}")
    return float(value)


def _str(obj: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> str:
    value = obj.get(key, default)
    if value is _MISSING:
        raise PayloadError(f"{where}.{key}: missing")
    if not isinstance(value, str):
        raise PayloadError(f"{where}.{key}: expected a string, got {type(value).__name__}")
    return value
