"""A simulated CockroachDB cluster serving the Cluster API v2 on real sockets.

Used by the end-to-end tests, the demo and `crdb-watchdog simulate`. Every node has its own
HTTP server on its own port, so a killed node really refuses connections, and a control
server on a separate port lets another thread or process drive faults. Paths, texts,
encodings and liveness transitions follow `reference/crdb-api-v2.md` (23.2 shapes).

Time is simulated: liveness, status records and reported timestamps all follow one clock
(`time.monotonic` unless injected) plus whatever `advance()` added, so a test can step past
a 9 s liveness TTL without sleeping. Reported epochs start at the host's wall clock when the
cluster is created and run ahead of it by the total advanced.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hmac
import json
import random
import re
import secrets
import selectors
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from watchdog.snapshot import Liveness

_API = "/api/v2/"
_SESSION_HEADER = "x-cockroach-api-session"
_INTERNAL_ERROR = ("An internal server error has occurred. "
                   "Please check your CockroachDB logs for more details.")
_BAD_SESSION = "the provided authentication session could not be validated"
_PAGE_NOT_FOUND = "404 page not found"
_FAULTS = frozenset({"status500", "hang", "garbage", "drop"})
_GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"
_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
               ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))
_RPC_PORT = 26257
_BUILD_TIMESTAMP = 1708560000
_HEARTBEAT_INTERVAL = 4.5
_YEAR = 365 * 86400
_CAPACITY = 100 * 2**30
_DEFAULT_HOT_TABLES = (("users", "users_pkey", 1), ("rides", "rides_pkey", 0),
                       ("vehicles", "vehicles_auto_index_fk_city_ref_users", 2))
_CONTROL_ACTIONS = frozenset({
    "kill", "revive", "restart", "drain", "undrain", "decommission", "recommission", "cut_off",
    "stall_status", "set_metric", "set_store_metric", "set_build_tag", "add_event",
    "add_hot_range", "clear_hot_ranges", "expire_sessions", "set_password", "revoke_admin",
    "inject", "advance", "reset_counters",
})


def _default_localities() -> list[dict[str, str]]:
    return [{"region": "us-east1", "az": f"us-east1-{zone}"} for zone in "bcd"]


@dataclass
class SimConfig:
    """What to simulate. Defaults are CockroachDB's own (9 s liveness TTL, 5 min to dead)."""

    nodes: int = 3
    host: str = "127.0.0.1"
    port: int = 0  # port of node 1; node i gets port+i-1; 0 = ephemeral ports for every node
    control_port: int = 0  # 0 = ephemeral
    username: str = "root"
    password: str = "secret"  # noqa: S105 - the simulator's own, printed test login
    liveness_ttl: float = 9.0  # seconds after a kill until liveness goes LIVE -> UNAVAILABLE
    time_until_store_dead: float = 300.0  # seconds after liveness expiry until -> DEAD
    status_interval: float = 10.0  # how often a running node rewrites its status record
    build_tag: str = "v23.2.2"
    store_metrics: bool = True  # False simulates 23.1 (no store_metrics key)
    session_ttl: float = 7 * 86400
    decommission_duration: float = 30.0  # seconds from decommission to decommissioned
    cluster_name: str = ""
    stores_per_node: int = 1
    localities: list[dict[str, str]] = field(default_factory=_default_localities)  # round-robin


_LIVE = frozenset({Liveness.LIVE, Liveness.DECOMMISSIONING, Liveness.DRAINING})


# --- wire encodings ---------------------------------------------------------------------


def _go_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON as Go's encoding/json writes it, HTML-safe escapes included."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
    for char, escape in _GO_ESCAPES:
        text = text.replace(char, escape)
    return text.encode()


def _num(value: float) -> float:
    """Go prints integral float64 values without a decimal point; so do we."""
    return int(value) if float(value).is_integer() and abs(value) < 1e21 else value


def _numbers(values: dict[str, float]) -> dict[str, float]:
    return {name: _num(value) for name, value in values.items()}


def _rfc3339nano(epoch_ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction trimmed."""
    seconds, nanos = divmod(epoch_ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{stamp}{fraction}Z"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _b64(text: str) -> bytes:
    """Go's strict base64.StdEncoding; raises ValueError."""
    return base64.b64decode(text, validate=True)


def _version(build_tag: str) -> tuple[int, int]:
    match = re.match(r"v(\d+)\.(\d+)", build_tag)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def _node_ids(text: str) -> list[int]:
    ids = [int(part) for part in text.split(",") if part.strip()]
    if any(node_id <= 0 for node_id in ids):
        raise ValueError("node IDs are positive")
    return ids


# --- requests and responses -------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def param(self, name: str) -> str:
        """Go's `r.URL.Query().Get`: the first value or ""."""
        values = self.query.get(name)
        return values[0] if values else ""

    def int_param(self, name: str) -> int:
        """strconv.Atoi with errors as 0, as the pagination helpers read limit and offset."""
        try:
            return int(self.param(name))
        except ValueError:
            return 0

    def form(self) -> dict[str, list[str]]:
        """Go's ParseForm: url-encoded body values first, then the query string's."""
        form: dict[str, list[str]] = {}
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(self.body.decode(errors="replace"), keep_blank_values=True)
        for name, values in self.query.items():
            form.setdefault(name, []).extend(values)
        return form


@dataclass(frozen=True)
class _Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False  # close the connection without answering


_DROP = _Response(drop=True)


def _json(value: Any, status: int = 200) -> _Response:
    return _Response(status, _go_json(value))


def _text(status: int, message: str) -> _Response:
    """Go's http.Error, which is how CockroachDB reports every API error."""
    return _Response(status, f"{message}\n".encode(), "text/plain; charset=utf-8",
                     (("X-Content-Type-Options", "nosniff"),))


def _fault_response(kind: str) -> _Response:
    if kind == "status500":
        return _text(500, _INTERNAL_ERROR)
    if kind == "garbage":
        return _Response(200, _GARBAGE)
    return _DROP


_App = Callable[[_Request], _Response]


# --- HTTP plumbing ----------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """One listening port with its own accept thread; close() also cuts keep-alive connections.

    A crashed process takes its open connections with it, so closing only the listening socket
    would let a client's pooled connection keep talking to a "dead" node.
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True  # a revived node binds its old port again at once
    request_queue_size = socket.SOMAXCONN  # as Go listens; 5 drops bursts of connects
    timeout = 0.1  # handle_request() gives up if a ready connection vanished meanwhile

    def __init__(self, host: str, port: int, app: _App) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._closing = False
        self._wake_r, self._wake_w = socket.socketpair()
        super().__init__((host, port), _Handler)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"simulator-http-{self.port}")
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host, which can take seconds."""
        socketserver.TCPServer.server_bind(self)

    def _accept_loop(self) -> None:
        """serve_forever() without its polling: close() wakes the selector at once."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closing:
                if any(key.fileobj is self.socket for key, _ in selector.select()):
                    self.handle_request()

    def close(self) -> None:
        self._closing = True
        self._wake_w.send(b"x")
        self._thread.join()
        self.server_close()
        self._wake_r.close()
        self._wake_w.close()
        with self._guard:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def track(self, connection: socket.socket) -> None:
        with self._guard:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._guard:
            self._connections.discard(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about connections torn mid-answer (faults do it on purpose); a bug in
        the simulator still prints its traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Plumbing only: HTTP/1.1 in, a `_Request` to the server's app, its `_Response` out."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    @property
    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def setup(self) -> None:
        super().setup()
        self._server.track(self.connection)

    def finish(self) -> None:
        self._server.untrack(self.connection)
        super().finish()

    def do_GET(self) -> None:
        """Every method reaches the app: CockroachDB's routes carry no method matchers."""
        response = self._server.app(self._read_request())
        if response.drop:
            self.close_connection = True
            return
        self.send_response_only(response.status)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815 - http.server's names

    def _read_request(self) -> _Request:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        return _Request(
            method=self.command,
            path=unquote(url.path),
            query=parse_qs(url.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests and the demo own the terminal."""


# --- cluster state ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Profile:
    """A node's baseline numbers, seeded by its id so every run reports the same cluster."""

    cpu: float
    rss: int
    goroutines: int
    open_fds: int
    clock_offset_ns: int
    qps: float
    sql_conns: int
    used_bytes: int
    replicas: int

    @classmethod
    def for_node(cls, node_id: int) -> _Profile:
        rng = random.Random(node_id)
        return cls(cpu=round(rng.uniform(0.08, 0.2), 4), rss=rng.randrange(900, 1400) * 2**20,
                   goroutines=rng.randrange(700, 1000), open_fds=rng.randrange(150, 260),
                   clock_offset_ns=rng.randrange(5, 60) * 1000, qps=round(rng.uniform(250, 400), 1),
                   sql_conns=rng.randrange(10, 40), used_bytes=rng.randrange(30, 45) * 10**9,
                   replicas=rng.randrange(140, 180))


@dataclass(frozen=True)
class _Record:
    """A status record: what `/nodes/` reports until the node writes the next one."""

    at: float
    metrics: dict[str, float]
    stores: dict[int, dict[str, float]]


@dataclass
class _Node:
    node_id: int
    port: int
    locality: dict[str, str]
    build_tag: str
    store_ids: list[int]
    started: float
    profile: _Profile
    killed_at: float | None = None
    stalled: bool = False
    frozen: _Record | None = None  # the last status record, once records stop being written
    draining: bool = False
    cut_off: bool = False
    decommission_due: float | None = None  # set while decommissioning
    decommission_requester: int = 0
    decommissioned: bool = False
    metric_overrides: dict[str, float] = field(default_factory=dict)
    store_overrides: dict[int, dict[str, float]] = field(default_factory=dict)
    server: _Server | None = None


@dataclass(frozen=True)
class _Event:
    seq: int
    at_ns: int
    event_type: str
    reporting_id: int
    info: dict[str, Any]
    unique_id: bytes

    def to_json(self) -> dict[str, Any]:
        """The v2 API's event: info re-encoded with sorted keys and the statement hidden."""
        info = dict(self.info)
        if "Statement" in info:
            info["Statement"] = "<hidden>"
        if self.event_type == "set_cluster_setting" and "Value" in info:
            info["Value"] = "<hidden>"
        body: dict[str, Any] = {"timestamp": _rfc3339nano(self.at_ns)}
        if self.event_type:
            body["event_type"] = self.event_type
        if self.reporting_id:
            body["reporting_id"] = self.reporting_id
        body["info"] = _go_json(info, sort_keys=True).decode()
        body["unique_id"] = base64.b64encode(self.unique_id).decode()
        return body


@dataclass(frozen=True)
class _HotRange:
    range_id: int
    node_id: int
    qps: float
    writes_per_second: float
    reads_per_second: float
    write_bytes_per_second: float
    read_bytes_per_second: float
    cpu_time_per_second: float
    leaseholder_node_id: int
    table_name: str
    database_name: str
    index_name: str
    schema_name: str
    replica_node_ids: list[int]
    store_id: int

    def to_json(self) -> dict[str, Any]:
        return {name: _num(value) if isinstance(value, float) else value
                for name, value in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class _Fault:
    kind: str
    path: str
    seconds: float


@dataclass(frozen=True)
class _Census:
    """Member and live node counts, taken once per response rather than once per node."""

    members: int
    live: int


@dataclass
class _Cursor:
    """Where a paged hot-ranges walk over the nodes stands: CockroachDB's `paginationState`."""

    queried: list[int] = field(default_factory=list)
    in_progress: int = 0
    index: int = 0
    to_query: list[int] = field(default_factory=list)

    @classmethod
    def parse(cls, token: str) -> _Cursor:
        """Decode a `start` token; an unreadable one starts over, as the server does."""
        try:
            queried, in_progress, index, to_query = (
                base64.urlsafe_b64decode(token).decode().split("|"))
            cursor = cls(_node_ids(queried), int(in_progress), int(index), _node_ids(to_query))
        except ValueError:
            return cls()
        if cursor.index < 0 or (cursor.index > 0 and cursor.in_progress <= 0):
            return cls()
        return cursor

    def token(self) -> str:
        text = "".join(f"{node_id}," for node_id in self.queried)
        text += f"|{self.in_progress}|{self.index}|"
        text += "".join(f"{node_id}," for node_id in self.to_query)
        return base64.urlsafe_b64encode(text.encode()).decode()

    def merge(self, node_ids: list[int]) -> None:
        """Queue the nodes this walk has not seen yet."""
        seen = {*self.queried, self.in_progress, *self.to_query}
        self.to_query += [node_id for node_id in node_ids if node_id not in seen]
        if self.in_progress == 0 and self.to_query:
            self.in_progress, self.index = self.to_query.pop(0), 0

    def pending(self) -> list[int]:
        return [self.in_progress, *self.to_query] if self.in_progress else []

    def take(self, node_id: int, length: int, limit: int) -> tuple[int, int]:
        """Slice bounds of node_id's results for this page; moves the cursor past them."""
        if limit <= 0 or self.in_progress == 0:
            return 0, 0
        if self.in_progress != node_id:  # the nodes before this one failed: count them done
            skipped = self.to_query[:self.to_query.index(node_id)]
            self.queried += [self.in_progress, *skipped]
            self.to_query = self.to_query[len(skipped) + 1:]
            self.in_progress, self.index = node_id, 0
        if length == 0:
            return 0, 0
        start = min(self.index, length)
        end = min(length, start + limit)
        if end < length:
            self.index = end
        else:
            self.queried.append(node_id)
            self.in_progress, self.index = (self.to_query.pop(0), 0) if self.to_query else (0, 0)
        return start, end


# --- the cluster ------------------------------------------------------------------------


class SimulatedCluster:
    """A CockroachDB cluster in one process: a server per node, shared state, a control API.

    Every public method is thread-safe (one lock around the state) and raises ValueError for
    a request that makes no sense (an unknown node, reviving a running node...).
    """

    def __init__(self, config: SimConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or SimConfig()
        if self.config.nodes < 1 or self.config.stores_per_node < 1:
            raise ValueError("a cluster needs at least one node and one store per node")
        self._clock = clock
        self._clock0 = clock()
        self._epoch0_ns = time.time_ns()
        self._offset = 0.0
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._started = False
        self._control: _Server | None = None
        self._password = self.config.password
        self._admin = True
        self._sessions: dict[bytes, float] = {}  # cookie -> expiry
        self._faults: dict[int | None, _Fault] = {}
        self._events: list[_Event] = []
        self._hot_ranges: dict[tuple[int, int], _HotRange] = {}
        self._requests: Counter[tuple[int, str]] = Counter()
        self._logins = 0
        now = self._now()
        today = self._epoch_ns(now) // 10**9
        self._cert_expiry = {
            "security.certificate.expiration.ca": today + 5 * _YEAR,
            "security.certificate.expiration.client-ca": 0,
            "security.certificate.expiration.ui-ca": 0,
            "security.certificate.expiration.ui": 0,
            "security.certificate.expiration.node": today + _YEAR,
            "security.certificate.expiration.node-client": today + _YEAR,
        }
        self._nodes = {node_id: self._new_node(node_id, now)
                       for node_id in range(1, self.config.nodes + 1)}
        for node in self._nodes.values():
            self._node_event("node_join", node, last_up=node.started)
            self._add_default_hot_ranges(node.node_id)

    def _new_node(self, node_id: int, now: float) -> _Node:
        config = self.config
        stores = config.stores_per_node
        localities = config.localities
        return _Node(
            node_id=node_id,
            port=config.port + node_id - 1 if config.port else 0,
            locality=dict(localities[(node_id - 1) % len(localities)]) if localities else {},
            build_tag=config.build_tag,
            store_ids=[(node_id - 1) * stores + k + 1 for k in range(stores)],
            started=now,
            profile=_Profile.for_node(node_id),
        )

    def _add_default_hot_ranges(self, node_id: int) -> None:
        rng = random.Random(-node_id)
        for table, index, offset in _DEFAULT_HOT_TABLES:
            qps = round(rng.uniform(60, 450), 3)
            self.add_hot_range(60 + 10 * node_id + offset, node_id, round(qps * 41_000), qps,
                               table_name=table, index_name=index)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Bind every node's port and the control port; serve from background threads."""
        with self._lock:
            if self._started:
                raise RuntimeError("a simulated cluster starts only once")
            self._started = True
            try:
                for node in self._nodes.values():
                    self._sync_listener(node)
                self._control = _Server(self.config.host, self.config.control_port,
                                        self._serve_control)
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Close every port and wake hanging requests. Idempotent."""
        with self._lock:
            self._stopped.set()
            for node in self._nodes.values():
                self._sync_listener(node)
            if self._control is not None:
                self._control.close()
                self._control = None

    def __enter__(self) -> SimulatedCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def urls(self) -> list[str]:
        """Each node's base URL, in node order (decommissioned nodes included)."""
        with self._lock:
            return [self._url(node.port) for node in self._nodes.values()]

    def url(self, node_id: int) -> str:
        with self._lock:
            return self._url(self._node(node_id).port)

    @property
    def control_url(self) -> str:
        with self._lock:
            if self._control is None:
                raise RuntimeError("the simulated cluster is not running")
            return self._url(self._control.port)

    def _url(self, port: int) -> str:
        return f"http://{self.config.host}:{port}"

    # --- faults and scenario control ----------------------------------------------------

    def kill(self, node_id: int) -> None:
        """Crash the process: the port refuses connections and the status record freezes;
        the cluster keeps saying LIVE until the liveness record expires (liveness_ttl)."""
        with self._lock:
            node, now = self._node(node_id), self._settle()
            if node.killed_at is not None:
                raise ValueError(f"node {node_id} is already down")
            node.frozen = node.frozen or self._record(node, now, self._census(now))
            node.killed_at = now
            self._sync_listener(node)

    def revive(self, node_id: int) -> None:
        """Restart a killed node: new started_at, a node_restart event, its port listens."""
        with self._lock:
            node, now = self._node(node_id), self._settle()
            if node.killed_at is None:
                raise ValueError(f"node {node_id} is not down")
            last_up, node.killed_at = node.killed_at, None
            node.started, node.draining = now, False
            if not node.stalled:
                node.frozen = None
            self._node_event("node_restart", node, last_up=last_up)
            self._sync_listener(node)

    def restart(self, node_id: int) -> None:
        """kill() and revive() in one step: a quick process restart."""
        with self._lock:
            self.kill(node_id)
            self.revive(node_id)

    def drain(self, node_id: int) -> None:
        """Start a graceful shutdown: liveness DRAINING, `/health/?ready=true` fails."""
        with self._lock:
            node = self._node(node_id)
            if node.killed_at is not None:
                raise ValueError(f"node {node_id} is down")
            node.draining = True

    def undrain(self, node_id: int) -> None:
        with self._lock:
            self._node(node_id).draining = False

    def decommission(self, node_id: int) -> None:
        """Start decommissioning (a node_decommissioning event); decommission_duration later the
        node is decommissioned (a node_decommissioned event) and leaves `/nodes/`."""
        with self._lock:
            node, now = self._node(node_id), self._settle()
            if node.decommissioned or node.decommission_due is not None:
                raise ValueError(f"node {node_id} is already decommissioning or decommissioned")
            live_peers = [peer.node_id for peer in self._members()
                          if peer.node_id != node_id and self._is_live(peer, now)]
            node.decommission_requester = live_peers[0] if live_peers else node_id
            node.decommission_due = now + self.config.decommission_duration
            self._membership_event("node_decommissioning", node, now)

    def recommission(self, node_id: int) -> None:
        """Cancel a running decommission (a node_recommissioned event)."""
        with self._lock:
            node, now = self._node(node_id), self._settle()
            if node.decommission_due is None:
                raise ValueError(f"node {node_id} is not decommissioning")
            node.decommission_due = None
            self._membership_event("node_recommissioned", node, now)

    def cut_off(self, node_id: int, on: bool = True) -> None:
        """A network partition between the watchdog and the node: its URL refuses connections,
        while the cluster still sees the node LIVE and serves its data from other nodes."""
        with self._lock:
            node = self._node(node_id)
            node.cut_off = on
            self._sync_listener(node)

    def stall_status(self, node_id: int, on: bool = True) -> None:
        """The node stays up and LIVE but stops rewriting its status record (updated_at and
        metrics freeze), as a stuck node does."""
        with self._lock:
            node, now = self._node(node_id), self._settle()
            node.stalled = on
            if on:
                node.frozen = node.frozen or self._record(node, now, self._census(now))
            elif node.killed_at is None:
                node.frozen = None

    def set_metric(self, node_id: int, name: str, value: float) -> None:
        """Pin a node metric (e.g. `clock-offset.meannanos`); shown from the next response."""
        with self._lock:
            self._node(node_id).metric_overrides[name] = value

    def set_store_metric(self, node_id: int, store_id: int, name: str, value: float) -> None:
        with self._lock:
            node = self._node(node_id)
            if store_id not in node.store_ids:
                raise ValueError(f"node {node_id} has stores {node.store_ids}, not {store_id}")
            node.store_overrides.setdefault(store_id, {})[name] = value

    def set_build_tag(self, node_id: int, tag: str) -> None:
        with self._lock:
            self._node(node_id).build_tag = tag

    def add_event(self, event_type: str, info: dict[str, Any] | None = None,
                  reporting_id: int = 1) -> str:
        """Write an event to the event log now; returns its base64 unique_id."""
        with self._lock:
            return self._record_event(event_type, info or {}, reporting_id, self._settle())

    def add_hot_range(self, range_id: int, node_id: int, cpu_time_per_second: float,
                      qps: float = 100.0, *, table_name: str = "users",
                      index_name: str = "users_pkey", database_name: str = "movr",
                      schema_name: str = "public", leaseholder_node_id: int | None = None,
                      replica_node_ids: list[int] | None = None,
                      store_id: int | None = None) -> None:
        """Report a range as hot on node_id (replacing it there); other rates follow qps."""
        with self._lock:
            node = self._node(node_id)
            writes = round(qps * 0.21, 3)
            reads = round(qps - writes, 3)
            self._hot_ranges[(node_id, range_id)] = _HotRange(
                range_id=range_id, node_id=node_id, qps=qps, writes_per_second=writes,
                reads_per_second=reads, write_bytes_per_second=round(writes * 1476, 1),
                read_bytes_per_second=round(reads * 2089, 1),
                cpu_time_per_second=cpu_time_per_second,
                leaseholder_node_id=leaseholder_node_id or node_id, table_name=table_name,
                database_name=database_name, index_name=index_name, schema_name=schema_name,
                replica_node_ids=replica_node_ids or self._replicas_for(node_id),
                store_id=store_id or node.store_ids[0])

    def clear_hot_ranges(self, node_id: int | None = None) -> None:
        with self._lock:
            self._hot_ranges = {key: hot for key, hot in self._hot_ranges.items()
                                if node_id is not None and hot.node_id != node_id}

    def expire_sessions(self) -> None:
        """Every session token now answers 401, as after server.web_session_timeout."""
        with self._lock:
            self._sessions.clear()

    def set_password(self, password: str) -> None:
        """Change the user's password; existing sessions stay valid, as in CockroachDB."""
        with self._lock:
            self._password = password

    def revoke_admin(self, on: bool = True) -> None:
        """Take the admin role away: admin endpoints answer 403."""
        with self._lock:
            self._admin = not on

    def inject(self, node_id: int | None, fault: str | None, path: str = "",
               seconds: float = 30.0) -> None:
        """Make a node's URL (None: every node's) misbehave on paths starting with `path`
        (relative to /api/v2/, e.g. "nodes/"; "" = all, health included):
        "status500" (generic 500 text), "hang" (answer after `seconds`), "garbage" (200 with a
        non-JSON body), "drop" (close without answering). fault=None clears it."""
        with self._lock:
            if node_id is not None:
                self._node(node_id)
            if fault is None:
                self._faults.pop(node_id, None)
                return
            if fault not in _FAULTS:
                raise ValueError(f"unknown fault {fault!r}: use one of {sorted(_FAULTS)}")
            if seconds < 0:
                raise ValueError("seconds must not be negative")
            self._faults[node_id] = _Fault(fault, path.removeprefix(_API), seconds)

    def advance(self, seconds: float) -> None:
        """Move simulated time forward: liveness, status records and timestamps follow."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._offset += seconds

    def reset_counters(self) -> None:
        with self._lock:
            self._requests.clear()
            self._logins = 0

    # --- observation --------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        """Requests received per path (relative to /api/v2/), in total and per node, and
        successful logins: {"logins": 1, "requests": {"nodes/": 3}, "by_node": {"1": {...}}}."""
        with self._lock:
            requests: Counter[str] = Counter()
            by_node: dict[str, dict[str, int]] = {}
            for (node_id, path), count in sorted(self._requests.items()):
                requests[path] += count
                by_node.setdefault(str(node_id), {})[path] = count
            return {"logins": self._logins, "requests": dict(requests), "by_node": by_node}

    def liveness(self, node_id: int) -> str:
        """The node's liveness name as the cluster reports it (`DECOMMISSIONED` once done)."""
        with self._lock:
            return self._liveness(self._node(node_id), self._settle()).name

    def state(self) -> dict[str, Any]:
        """Everything a test may want to assert on, JSON-ready (`GET /control/state`)."""
        with self._lock:
            now = self._settle()
            nodes = [{
                "node_id": node.node_id,
                "url": self._url(node.port),
                "port": node.port,
                "up": node.killed_at is None,
                "listening": node.server is not None,
                "cut_off": node.cut_off,
                "stalled": node.stalled,
                "draining": node.draining,
                "decommissioning": node.decommission_due is not None,
                "decommissioned": node.decommissioned,
                "liveness": self._liveness(node, now).name,
                "build_tag": node.build_tag,
            } for node in self._nodes.values()]
            faults = [{"node_id": node_id, "fault": fault.kind, "path": fault.path,
                       "seconds": fault.seconds} for node_id, fault in self._faults.items()]
            return {"nodes": nodes, "faults": faults, "admin": self._admin,
                    "counters": self.counters()}

    # --- time and derived state ---------------------------------------------------------

    def _now(self) -> float:
        return self._clock() + self._offset

    def _epoch_ns(self, at: float) -> int:
        return self._epoch0_ns + round((at - self._clock0) * 1e9)

    def _settle(self) -> float:
        """Apply what time alone changes (finished decommissions); return the current time."""
        now = self._now()
        for node in self._nodes.values():
            due = node.decommission_due
            if due is not None and due <= now:
                node.decommission_due, node.decommissioned = None, True
                self._membership_event("node_decommissioned", node, due)
        return now

    def _node(self, node_id: int) -> _Node:
        node = self._nodes.get(node_id)
        if node is None:
            raise ValueError(f"no node {node_id}: nodes are 1..{len(self._nodes)}")
        return node

    def _members(self) -> list[_Node]:
        """Nodes that still have a status record: all but the decommissioned."""
        return [node for node in self._nodes.values() if not node.decommissioned]

    def _liveness(self, node: _Node, now: float) -> Liveness:
        """CockroachDB's derivation: the liveness record expires liveness_ttl after the
        process dies and counts as dead time_until_store_dead later."""
        if node.decommissioned:
            return Liveness.DECOMMISSIONED
        decommissioning = node.decommission_due is not None
        if node.killed_at is not None:
            expired_for = now - node.killed_at - self.config.liveness_ttl
            if expired_for >= self.config.time_until_store_dead:
                return Liveness.DECOMMISSIONED if decommissioning else Liveness.DEAD
            if expired_for >= 0:
                return Liveness.UNAVAILABLE
        if decommissioning:
            return Liveness.DECOMMISSIONING
        return Liveness.DRAINING if node.draining else Liveness.LIVE

    def _is_live(self, node: _Node, now: float) -> bool:
        return self._liveness(node, now) in _LIVE

    def _serving(self, node: _Node) -> bool:
        return (self._started and not self._stopped.is_set() and node.killed_at is None
                and not node.cut_off)

    def _sync_listener(self, node: _Node) -> None:
        """Open or close the node's port to match its state."""
        if self._serving(node) and node.server is None:
            node.server = _Server(self.config.host, node.port,
                                  functools.partial(self._serve_node, node.node_id))
            node.port = node.server.port
        elif not self._serving(node) and node.server is not None:
            node.server.close()
            node.server = None

    def _replicas_for(self, node_id: int) -> list[int]:
        ids = [node.node_id for node in self._members()]
        first = ids.index(node_id) if node_id in ids else 0
        return sorted({ids[(first + k) % len(ids)] for k in range(min(3, len(ids)))})

    def _census(self, now: float) -> _Census:
        members = self._members()
        return _Census(len(members), sum(self._is_live(node, now) for node in members))

    def _record(self, node: _Node, now: float, census: _Census) -> _Record:
        """The node's latest status record: rewritten every status_interval while it runs."""
        if node.frozen is not None:
            return node.frozen
        interval = self.config.status_interval
        at = now if interval <= 0 else node.started + (now - node.started) // interval * interval
        return _Record(at, self._node_metrics(node, at, census), self._store_metrics(node, census))

    def _node_metrics(self, node: _Node, at: float, census: _Census) -> dict[str, float]:
        profile = node.profile
        uptime = at - node.started
        queries = profile.qps * uptime
        return {
            "node-id": node.node_id,
            "build.timestamp": _BUILD_TIMESTAMP,
            "sys.uptime": int(uptime),
            "sys.cpu.combined.percent-normalized": profile.cpu,
            "sys.cpu.user.percent": round(profile.cpu * 3.1, 4),
            "sys.cpu.sys.percent": round(profile.cpu * 0.9, 4),
            "sys.rss": profile.rss,
            "sys.goroutines": profile.goroutines,
            "sys.fd.open": profile.open_fds,
            "sys.fd.softlimit": 1_048_576,
            "sys.host.disk.read.bytes": int(210_000 * uptime),
            "sys.host.net.recv.bytes": int(830_000 * uptime),
            "liveness.livenodes": census.live,
            "liveness.heartbeatsuccesses": int(uptime / _HEARTBEAT_INTERVAL),
            "liveness.heartbeatfailures": 0,
            "liveness.epochincrements": 0,
            "liveness.heartbeatlatency-p99": 4_718_591,
            "clock-offset.meannanos": profile.clock_offset_ns,
            "clock-offset.stddevnanos": profile.clock_offset_ns // 2,
            "round-trip-latency-p99": 1_376_255,
            "sql.conns": profile.sql_conns,
            "sql.query.count": int(queries),
            "sql.select.count": int(queries * 0.7),
            "sql.insert.count": int(queries * 0.15),
            "sql.update.count": int(queries * 0.1),
            "sql.delete.count": int(queries * 0.02),
            "sql.failure.count": int(queries * 0.0004),
            "sql.service.latency-p50": 1_114_111,
            "sql.service.latency-p99": 25_165_823,
            "txn.commits": int(queries * 0.8),
            "txn.aborts": int(queries * 0.001),
            **self._cert_expiry,
        }

    def _store_metrics(self, node: _Node, census: _Census) -> dict[int, dict[str, float]]:
        """Per-store gauges; ranges count as under-replicated once a peer's liveness expires."""
        under_share = min(1.0, 3 * (census.members - census.live) / max(census.members, 1))
        stores = len(node.store_ids)
        replicas = node.profile.replicas // stores
        leaseholders = replicas // 3
        used = node.profile.used_bytes // stores
        return {store_id: {
            "capacity": _CAPACITY,
            "capacity.available": int(_CAPACITY * 0.95) - used,
            "capacity.used": used,
            "capacity.reserved": 0,
            "ranges": replicas,
            "replicas": replicas,
            "replicas.leaders": leaseholders,
            "replicas.leaseholders": leaseholders,
            "replicas.leaders_not_leaseholders": 0,
            "replicas.quiescent": int(replicas * 0.8),
            "livebytes": int(used * 0.6),
            "ranges.underreplicated": round(leaseholders * under_share),
            "ranges.overreplicated": 0,
            "ranges.unavailable": 0,
            "requests.slow.raft": 0,
            "kv.replica_circuit_breaker.num_tripped_replicas": 0,
            "rebalancing.queriespersecond": round(node.profile.qps / stores, 3),
        } for store_id in node.store_ids}

    def _record_event(self, event_type: str, info: dict[str, Any], reporting_id: int,
                      at: float) -> str:
        at_ns = self._epoch_ns(at)
        event = _Event(len(self._events), at_ns, event_type, reporting_id,
                       {"EventType": event_type, "Timestamp": at_ns, **info}, uuid.uuid4().bytes)
        self._events.append(event)
        return base64.b64encode(event.unique_id).decode()

    def _node_event(self, event_type: str, node: _Node, last_up: float) -> None:
        info = {"NodeID": node.node_id, "StartedAt": self._epoch_ns(node.started),
                "LastUp": self._epoch_ns(last_up)}
        self._record_event(event_type, info, node.node_id, node.started)

    def _membership_event(self, event_type: str, node: _Node, at: float) -> None:
        requester = node.decommission_requester
        info = {"RequestingNodeID": requester, "TargetNodeID": node.node_id}
        self._record_event(event_type, info, requester, at)

    # --- the Cluster API ----------------------------------------------------------------

    def _serve_node(self, node_id: int, request: _Request) -> _Response:
        """Answer one request to a node's URL: injected faults first, then the API."""
        path = request.path.removeprefix(_API)
        with self._lock:
            node = self._nodes[node_id]
            if not self._serving(node):
                return _DROP
            self._requests[(node_id, path)] += 1
            fault = self._faults.get(node_id) or self._faults.get(None)
        if fault is not None and path.startswith(fault.path):
            if fault.kind != "hang":
                return _fault_response(fault.kind)
            self._stopped.wait(fault.seconds)  # without the lock: other requests go on
        with self._lock:
            if not self._serving(node):
                return _DROP
            return self._api(node, request, path)

    def _api(self, node: _Node, request: _Request, path: str) -> _Response:
        """Route as the real server does: unknown paths (slash-less ones too) 404 before auth."""
        now = self._settle()
        if not request.path.startswith(_API):
            return _text(404, _PAGE_NOT_FOUND)
        endpoint: Callable[[_Node, _Request, float], _Response]
        match path:
            case "login/":
                return self._login(request, now)
            case "logout/":
                return self._logout(request)
            case "health/":
                return self._health(node, request, now)
            case "nodes/":
                endpoint = self._list_nodes
            case "events/":
                endpoint = self._list_events
            case "ranges/hot/":
                endpoint = self._list_hot_ranges
            case "nodes/local/ranges/":
                endpoint = self._local_ranges
            case _:
                return _text(404, _PAGE_NOT_FOUND)
        return self._authorize(request, now) or endpoint(node, request, now)

    def _login(self, request: _Request, now: float) -> _Response:
        if request.method != "POST":
            return _text(404, "not found")
        form = request.form()
        username = (form.get("username") or [""])[0].lower()
        password = (form.get("password") or [""])[0]
        if not username:
            return _text(400, "username not specified")
        if (username != self.config.username.lower()
                or not hmac.compare_digest(password.encode(), self._password.encode())):
            return _text(401, "the provided credentials did not match any account on the server")
        cookie = self._new_session_cookie(now)
        self._sessions[cookie] = now + self.config.session_ttl
        self._logins += 1
        return _json({"session": base64.b64encode(cookie).decode()})

    def _new_session_cookie(self, now: float) -> bytes:
        """A protobuf SessionCookie{id: a unique_rowid()-like int64, secret: 16 bytes}."""
        session_id = (self._epoch_ns(now) // 10_000) << 15 | secrets.randbelow(1 << 15)
        return b"\x08" + _varint(session_id) + b"\x12\x10" + secrets.token_bytes(16)

    def _logout(self, request: _Request) -> _Response:
        if request.method != "POST":
            return _text(404, "not found")
        header = request.headers.get(_SESSION_HEADER, "")
        if not header:
            return _text(400, "invalid or unspecified session")
        try:
            cookie = _b64(header)
        except ValueError:
            return _text(500, _INTERNAL_ERROR)
        if self._sessions.pop(cookie, None) is None:
            return _text(400, "invalid session")
        return _json({"logged_out": True})

    def _authorize(self, request: _Request, now: float) -> _Response | None:
        """The session check in front of the admin endpoints; None lets the request through."""
        header = request.headers.get(_SESSION_HEADER, "")
        if not header:
            return _text(401, "invalid session header")
        try:
            cookie = _b64(header)
        except ValueError:
            return _text(400, "invalid session header")
        expires = self._sessions.get(cookie)
        if expires is None or expires <= now:
            self._sessions.pop(cookie, None)
            return _text(401, _BAD_SESSION)
        if not self._admin:
            return _text(403, "user not allowed to access this endpoint")
        return None

    def _health(self, node: _Node, request: _Request, now: float) -> _Response:
        ready = request.param("ready")
        if ready and ready not in _GO_BOOLS:
            return _text(400, "invalid ready value")
        if ready and _GO_BOOLS[ready] and self._liveness(node, now) not in (
                Liveness.LIVE, Liveness.DECOMMISSIONING):
            return _text(500, _INTERNAL_ERROR)
        return _json({})

    def _list_nodes(self, gateway: _Node, request: _Request, now: float) -> _Response:
        """Offset pagination as `simplePaginate`: `next` omitted once the end is reached."""
        members = self._members()
        limit, offset = self._simple_pagination(request)
        page, next_offset = members, 0
        if limit > 0:
            page = members[offset:offset + limit]
            next_offset = 0 if offset + limit >= len(members) else offset + limit
        census = self._census(now)
        body: dict[str, Any] = {
            "nodes": [self._render_node(node, now, census) for node in page] or None}
        if next_offset:
            body["next"] = next_offset
        return _json(body)

    @staticmethod
    def _simple_pagination(request: _Request) -> tuple[int, int]:
        limit = max(request.int_param("limit"), 0)
        return limit, max(request.int_param("offset"), 0) if limit else 0

    def _render_node(self, node: _Node, now: float, census: _Census) -> dict[str, Any]:
        record = self._record(node, now, census)
        major, minor = _version(node.build_tag)
        address = {"network_field": "tcp",
                   "address_field": f"{self.config.host}:{_RPC_PORT + node.node_id - 1}"}
        body: dict[str, Any] = {
            "node_id": node.node_id,
            "address": address,
            "attrs": {},
            "locality": {"tiers": [{"key": key, "value": value}
                                   for key, value in node.locality.items()] or None},
            "ServerVersion": {"major_val": major, "minor_val": minor, "patch": 0, "internal": 0},
            "build_tag": node.build_tag,
            "started_at": self._epoch_ns(node.started),
            "cluster_name": self.config.cluster_name,
            "sql_address": address,
            "metrics": _numbers({**record.metrics, **node.metric_overrides}),
        }
        if self.config.store_metrics:
            body["store_metrics"] = {
                str(store_id): _numbers({**metrics, **node.store_overrides.get(store_id, {})})
                for store_id, metrics in record.stores.items()}
        body["total_system_memory"] = 16 * 2**30
        body["num_cpus"] = 4
        body["updated_at"] = self._epoch_ns(record.at)
        body["liveness_status"] = int(self._liveness(node, now))
        return body

    def _list_events(self, gateway: _Node, request: _Request, now: float) -> _Response:
        """Newest first; `next` whenever a limited page is full, even if nothing follows."""
        limit, offset = self._simple_pagination(request)
        event_type = request.param("type")
        events = sorted((event for event in self._events
                         if not event_type or event.event_type == event_type),
                        key=lambda event: (event.at_ns, event.seq), reverse=True)
        page = events[offset:offset + limit] if limit else events
        body: dict[str, Any] = {"events": [event.to_json() for event in page] or None}
        if limit and len(page) == limit:
            body["next"] = offset + limit
        return _json(body)

    def _local_ranges(self, gateway: _Node, request: _Request, now: float) -> _Response:
        """`/nodes/local/ranges/`: the ranges with a replica on the node asked, which says
        who it is (`source_node_id`). Every simulated node holds a replica of range 1."""
        limit, offset = self._simple_pagination(request)
        replica = {"desc": {"range_id": 1, "start_key": "", "end_key": "/w==",
                            "store_id": 0, "queries_per_second": 0},
                   "span": {"start_key": "/Min", "end_key": "/System/NodeLiveness"},
                   "source_node_id": gateway.node_id, "source_store_id": gateway.node_id,
                   "lease_history": [], "problems": {}, "stats": {}}
        ranges = [replica][offset:offset + limit] if limit else [replica]
        return _json({"ranges": ranges or None})

    def _list_hot_ranges(self, gateway: _Node, request: _Request, now: float) -> _Response:
        """A fan-out to every node (or, with a limit, a cursor walk over them); a node that
        cannot be dialled becomes a `response_error` entry and the call still answers 200."""
        every_node = [node.node_id for node in self._members()]
        requested = every_node
        node_param = request.param("node_id")
        if node_param:
            node_id = gateway.node_id if node_param == "local" else request.int_param("node_id")
            if node_id <= 0:
                return _text(400, "invalid node ID")
            requested = [node_id]
        limit = max(request.int_param("limit"), 0)
        ranges: list[_HotRange] = []
        errors: list[dict[str, Any]] = []
        cursor = _Cursor()
        if not limit:  # node_id is ignored without a limit, as in CockroachDB
            for node_id in every_node:
                found, error = self._hot_ranges_of(node_id, now)
                ranges += found
                if error:
                    errors.append(error)
        else:
            cursor = _Cursor.parse(request.param("start"))
            cursor.merge(requested)
            for node_id in cursor.pending():
                remaining = limit - len(ranges)
                if remaining <= 0:
                    break
                found, error = self._hot_ranges_of(node_id, now)
                if error:
                    errors.append(error)
                    continue
                start, end = cursor.take(node_id, len(found), remaining)
                ranges += found[start:end]
        body: dict[str, Any] = {"ranges": [hot.to_json() for hot in ranges] or None}
        if errors:
            body["response_error"] = errors
        body["next"] = cursor.token()
        return _json(body)

    def _hot_ranges_of(self, node_id: int, now: float,
                       ) -> tuple[list[_HotRange], dict[str, Any] | None]:
        """What the RPC to one node returns: its hot ranges, busiest first, or a dial error."""
        node = self._nodes.get(node_id)
        if node is None or node.decommissioned:
            status, detail = Liveness.UNKNOWN, f"unable to look up descriptor for n{node_id}"
        elif node.killed_at is not None:
            status, detail = self._liveness(node, now), f"unable to dial n{node_id}: breaker open"
        else:
            found = [hot for hot in self._hot_ranges.values() if hot.node_id == node_id]
            return sorted(found, key=lambda hot: -hot.qps), None
        message = f"failed to dial into node {node_id} (NODE_STATUS_{status.name}): {detail}"
        return [], {"error_message": message, "node_id": node_id}

    # --- the control API ----------------------------------------------------------------

    def _serve_control(self, request: _Request) -> _Response:
        """`POST /control/<action>` with the method's keyword arguments as a JSON object, and
        `GET /control/state`. Bad requests answer 400 `{"error": ...}`."""
        if request.method == "GET" and request.path == "/control/state":
            return _json(self.state())
        action = request.path.removeprefix("/control/")
        if request.method != "POST" or action not in _CONTROL_ACTIONS:
            return _json({"error": f"no control endpoint {request.method} {request.path}"}, 404)
        try:
            arguments = json.loads(request.body or b"{}")
            if not isinstance(arguments, dict):
                raise TypeError("the body must be a JSON object of keyword arguments")
            result = getattr(self, action)(**arguments)
        except (TypeError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"ok": True, "result": result})


def serve(config: SimConfig, *,
          on_ready: Callable[[SimulatedCluster], None] | None = None) -> None:
    """Run a simulated cluster in the foreground until SIGINT or SIGTERM (`simulate`)."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with SimulatedCluster(config) as cluster:
            print(f"simulated CockroachDB {config.build_tag} cluster, "
                  f"{config.nodes} node(s)", flush=True)
            for node_id, url in enumerate(cluster.urls, start=1):
                print(f"node {node_id}: {url}", flush=True)
            print(f"control: {cluster.control_url}", flush=True)
            print(f"login: {config.username} / {config.password}", flush=True)
            if on_ready is not None:
                on_ready(cluster)
            stop.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
