"""The cluster client stage: HTTP, session, failover, TLS and paging for one cluster.

It turns Cluster API v2 answers into snapshot items and every failure into one of the
`ClusterError`s below; it knows nothing of rules or alerts. One `httpx.AsyncClient` per cluster
stays open, so a poll in steady state costs exactly one HTTP request.

Failover covers what another node may answer differently (connection errors, timeouts, 5xx,
bodies that are not the documented JSON). A 4xx would be the same on every node, so it is
raised at once. Secrets (the password, the session token, credentials in a URL) never reach a
log record, an exception message or `repr`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

import httpx

from watchdog import __version__
from watchdog.config import ClusterConfig
from watchdog.snapshot import (
    Event,
    HealthItem,
    HotRange,
    Node,
    PayloadError,
    dedupe_hot_ranges,
    parse_events,
    parse_hot_ranges,
    parse_nodes,
)

logger = logging.getLogger(__name__)

SESSION_HEADER = "X-Cockroach-API-Session"
NODES_PAGE_SIZE = 500
# Characters of an error body kept in a message: enough for CockroachDB's one-line texts,
# short enough for a proxy's HTML error page.
ERROR_TEXT_LIMIT = 300

T = TypeVar("T")
Params = Mapping[str, str | int]


class ClusterError(Exception):
    """Base; its message never contains a password, a session token or URL credentials."""


class ClusterUnreachable(ClusterError):
    """Every URL failed this call; `reasons` maps each URL (credentials removed) to why."""

    def __init__(self, cluster: str, reasons: dict[str, str]) -> None:
        self.reasons = reasons
        detail = "; ".join(f"{url}: {reason}" for url, reason in reasons.items())
        super().__init__(f"cluster {cluster}: no URL gave a usable answer: {detail}")


class AuthenticationFailed(ClusterError):
    """Login refused (bad user or password, expired password): a config problem, not retried."""


class PermissionDenied(ClusterError):
    """403: the user lacks admin (23.1) or VIEWCLUSTERMETADATA (23.2+)."""


class ApiError(ClusterError):
    """Any other unexpected answer (404 wrong path, 501 on a tenant, 400)."""

    def __init__(self, message: str, *, status: int, text: str) -> None:
        super().__init__(message)
        self.status = status
        self.text = text


@dataclass
class ClientStats:
    """Counters for tests and /metrics."""

    requests: int = 0
    """HTTP requests sent, logins and health probes included."""
    logins: int = 0
    """Login attempts, successful or not."""
    failovers: int = 0
    """Calls answered by a URL other than the first one tried."""


class _UrlFailed(Exception):
    """This URL gave no usable answer; another node may."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Refused(Exception):
    """A definite 4xx (or other non-2xx, non-5xx) answer, which every node would give alike."""

    def __init__(self, path: str, status: int, text: str) -> None:
        super().__init__(f"{path}: HTTP {status}: {text}")
        self.path = path
        self.status = status
        self.text = text


@dataclass(frozen=True)
class _Endpoint:
    """A configured URL. Credentials in it move to `auth`, so `url` is safe to log and show."""

    url: str
    auth: httpx.BasicAuth | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, configured: str) -> _Endpoint:
        parsed = httpx.URL(configured)
        if not parsed.userinfo:
            return cls(configured)
        bare = str(parsed.copy_with(username=None, password=None)).rstrip("/")
        return cls(bare, httpx.BasicAuth(parsed.username, parsed.password))


@dataclass(frozen=True)
class _Session:
    """The token in use and which login made it, so a wave of 401s causes one login."""

    generation: int
    token: str | None = field(default=None, repr=False)
    failure: ClusterError | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.token is None else {SESSION_HEADER: self.token}


class ClusterClient:
    """One cluster's Cluster API v2: a kept-open HTTP client, one session, failover over URLs."""

    def __init__(self, config: ClusterConfig, *, max_body_bytes: int = 64 * 2**20) -> None:
        self.name = config.name
        self.stats = ClientStats()
        self._config = config
        self._endpoints = [_Endpoint.parse(url) for url in config.urls]
        self._preferred = 0
        self._max_body_bytes = max_body_bytes
        self._timeout = config.timeout.total_seconds()
        self._anonymous = config.password is None and config.password_file is None
        self._session = _Session(generation=0)
        self._login_lock = asyncio.Lock()
        self._node_ids: dict[str, int | None] = {}
        self._http = httpx.AsyncClient(
            verify=_tls_context(config),
            timeout=httpx.Timeout(self._timeout),
            headers={"User-Agent": f"crdb-watchdog/{__version__}"},
            trust_env=False,  # a proxy would defeat per-node health checks and failover
        )

    def __repr__(self) -> str:
        urls = [endpoint.url for endpoint in self._endpoints]
        return f"ClusterClient(name={self.name!r}, urls={urls!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the four sources -------------------------------------------------------------------

    async def nodes(self) -> list[Node]:
        """Every node, paged by offset until `next` is absent: big clusters make big pages."""
        nodes: list[Node] = []
        offset: int | None = 0
        while offset is not None:
            params = {"limit": NODES_PAGE_SIZE, "offset": offset}
            page, offset = await self._get("nodes/", params, partial(_nodes_page, offset=offset))
            nodes += page
        return nodes

    async def health(self) -> list[HealthItem]:
        """What each URL says about its own node; a down node is data here, never an exception."""
        return list(await asyncio.gather(*(self._health_of(e) for e in self._endpoints)))

    async def events(self, *, limit: int = 100, offset: int = 0) -> list[Event]:
        """One page, newest first. `limit` always goes out: without it the server sends the
        whole event log."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        return await self._get("events/", {"limit": limit, "offset": offset}, parse_events)

    async def hot_ranges(
        self, *, page_size: int = 1000
    ) -> tuple[list[HotRange], list[tuple[int, str]]]:
        """Hot ranges of every node, one per range id, and the nodes that could not report.

        Pages by `start` token until an empty page: with `limit` the server's token is present
        on every page, so only an empty page marks the end.
        """
        ranges: list[HotRange] = []
        errors: list[tuple[int, str]] = []
        start: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if start is not None:
                params["start"] = start
            page, page_errors, start = await self._get(
                "ranges/hot/", params, partial(_hot_ranges_page, sent=start))
            ranges += page
            errors += page_errors
            if not page or start is None:
                return dedupe_hot_ranges(ranges), list(dict.fromkeys(errors))

    # --- session ----------------------------------------------------------------------------

    async def _get(self, path: str, params: Params, parse: Callable[[Any], T],
                   only: _Endpoint | None = None) -> T:
        """An authenticated GET (of `only` that URL, if given; else with failover).

        A rejected session gets one fresh login and one retry.
        """
        session = await self._current_session()
        try:
            return await self._exchange("GET", path, parse, params=params,
                                        headers=session.headers, only=only)
        except _Refused as refused:
            if refused.status != 401 or self._anonymous:
                raise self._data_error(refused) from None
            logger.info("cluster %s: session rejected (%s); logging in again",
                        self.name, refused.text)
        session = await self._login(stale=session)
        try:
            return await self._exchange("GET", path, parse, params=params,
                                        headers=session.headers, only=only)
        except _Refused as refused:
            raise self._data_error(refused, fresh_session=True) from None

    async def _current_session(self) -> _Session:
        """Log in lazily, on first need; with no password configured, never."""
        if self._session.token is None and not self._anonymous:
            return await self._login(stale=self._session)
        return self._session

    async def _login(self, *, stale: _Session) -> _Session:
        """Replace a stale session once: callers queued behind a login share its outcome."""
        async with self._login_lock:
            if self._session.generation == stale.generation:
                self._session = await self._new_session(stale.generation + 1)
            if self._session.failure is not None:
                raise self._session.failure
            return self._session

    async def _new_session(self, generation: int) -> _Session:
        try:
            token = await self._post_login()
        except ClusterError as exc:
            return _Session(generation, failure=exc)
        logger.info("cluster %s: logged in as %s", self.name, self._config.username)
        return _Session(generation, token=token)

    async def _post_login(self) -> str:
        try:
            password = self._config.read_password()
        except OSError as exc:
            raise AuthenticationFailed(
                f"cluster {self.name}: cannot read password_file: {exc.strerror}") from None
        self.stats.logins += 1
        form = {"username": self._config.username,
                "password": password.get_secret_value() if password else ""}
        try:
            return await self._exchange("POST", "login/", _session_token, data=form)
        except _Refused as refused:
            if refused.status in (400, 401):
                raise AuthenticationFailed(
                    f"cluster {self.name}: login as {self._config.username!r} was refused: "
                    f"{refused.text} (check username and password)") from None
            raise self._api_error(refused) from None

    def _data_error(self, refused: _Refused, *, fresh_session: bool = False) -> ClusterError:
        """The exception for a non-failover answer to a data call."""
        if refused.status == 401 and self._anonymous:
            return AuthenticationFailed(
                f"cluster {self.name}: {refused.path} requires a login ({refused.text}): "
                "a password (password or password_file) is required")
        if refused.status == 401 and fresh_session:
            return AuthenticationFailed(
                f"cluster {self.name}: a session from a fresh login was rejected: {refused.text}")
        if refused.status == 403:
            return PermissionDenied(
                f"cluster {self.name}: user {self._config.username!r} may not read "
                f"{refused.path} ({refused.text}): it needs the admin role (23.1) or the "
                "VIEWCLUSTERMETADATA system privilege (23.2+)")
        return self._api_error(refused)

    def _api_error(self, refused: _Refused) -> ApiError:
        return ApiError(
            f"cluster {self.name}: /api/v2/{refused.path} answered HTTP {refused.status}: "
            f"{refused.text}", status=refused.status, text=refused.text)

    # --- failover and transport -------------------------------------------------------------

    async def _exchange(
        self,
        method: str,
        path: str,
        parse: Callable[[Any], T],
        *,
        params: Params | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        only: _Endpoint | None = None,
    ) -> T:
        """Try each URL, the one that last answered first, until one gives a usable answer."""
        reasons: dict[str, str] = {}
        count = len(self._endpoints)
        order = [(self._preferred + tried) % count for tried in range(count)]
        if only is not None:
            order = [self._endpoints.index(only)]
        for tried, index in enumerate(order):
            endpoint = self._endpoints[index]
            try:
                status, body = await self._fetch(endpoint, method, path, params, data, headers)
                result = _decode(path, status, body, parse)
            except _UrlFailed as failed:
                logger.debug("cluster %s: %s on %s failed: %s",
                             self.name, path, endpoint.url, failed.reason)
                reasons[endpoint.url] = failed.reason
                continue
            if tried:
                self.stats.failovers += 1
                logger.info("cluster %s: %s answered by %s after failures: %s",
                            self.name, path, endpoint.url, reasons)
            if only is None:
                self._preferred = index
            return result
        raise ClusterUnreachable(self.name, reasons)

    async def _health_of(self, endpoint: _Endpoint) -> HealthItem:
        (status, error, latency), (ready, _, _) = await asyncio.gather(
            self._probe(endpoint, {}), self._probe(endpoint, {"ready": "true"}))
        ok = status == 200
        return HealthItem(url=endpoint.url, node_id=None, ok=ok, ready=ready == 200,
                          status=status, error=None if ok else error, latency=latency)

    async def identify(self, health: Sequence[HealthItem]) -> list[HealthItem]:
        """The same health items, with `node_id` set wherever the URL's node is known."""
        ids = await asyncio.gather(*(self._node_id(item) for item in health))
        return [replace(item, node_id=node_id) for item, node_id in zip(health, ids, strict=True)]

    async def _node_id(self, item: HealthItem) -> int | None:
        """Which node serves a URL, asked once: the source of one of its local ranges.

        Health rules need it to say "node 3 is unreachable" rather than just a URL, and to
        let NodeLivenessLost of node 3 stand in for it. A definite answer is kept (a node's
        id does not change); a URL that does not answer now is asked once it does.
        """
        if item.url in self._node_ids or not item.ok:
            return self._node_ids.get(item.url)
        endpoint = next(e for e in self._endpoints if e.url == item.url)
        try:
            node_id = await self._get("nodes/local/ranges/", {"limit": 1}, _local_node_id,
                                      only=endpoint)
        except ClusterUnreachable:
            return None
        except ClusterError as exc:
            logger.info("cluster %s: cannot tell which node serves %s: %s",
                        self.name, endpoint.url, exc)
            node_id = None
        self._node_ids[endpoint.url] = node_id
        return node_id

    async def _probe(
        self, endpoint: _Endpoint, params: Params
    ) -> tuple[int | None, str | None, float | None]:
        """(status, reason when not 200, latency); status and latency are None with no answer."""
        started = time.perf_counter()
        try:
            status, body = await self._fetch(endpoint, "GET", "health/", params)
        except _UrlFailed as failed:
            return None, failed.reason, None
        reason = None if status == 200 else f"HTTP {status}: {_text(body)}"
        return status, reason, time.perf_counter() - started

    async def _fetch(
        self,
        endpoint: _Endpoint,
        method: str,
        path: str,
        params: Params | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One HTTP exchange; a transport failure or an oversized body fails this URL."""
        self.stats.requests += 1
        try:
            async with self._http.stream(
                method, f"{endpoint.url}/api/v2/{path}", params=params, data=data,
                headers=headers, auth=endpoint.auth,
            ) as response:
                return response.status_code, await self._read_capped(response)
        except httpx.TimeoutException as exc:
            raise _UrlFailed(f"timed out after {self._timeout:g} s "
                             f"({type(exc).__name__})") from None
        except httpx.RequestError as exc:
            raise _UrlFailed(_transport_reason(exc)) from None

    async def _read_capped(self, response: httpx.Response) -> bytes:
        """Stop reading past the cap, so a runaway response cannot exhaust memory."""
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_body_bytes:
                raise _UrlFailed(f"response larger than {self._max_body_bytes} bytes")
        return bytes(body)


def _tls_context(config: ClusterConfig) -> ssl.SSLContext | bool:
    """Built once per client: loading CA certificates costs about 30 ms."""
    if not config.tls_verify:
        if any(url.startswith("https://") for url in config.urls):
            logger.warning("cluster %s: TLS certificate verification is disabled "
                           "(tls_verify: false)", config.name)
        return False
    cafile = None if config.ca_cert is None else str(config.ca_cert)
    try:
        return ssl.create_default_context(cafile=cafile)
    except OSError as exc:
        raise ClusterError(f"cluster {config.name}: cannot load ca_cert {cafile}: {exc}") from None


def _transport_reason(exc: httpx.RequestError) -> str:
    """httpx often says only "All connection attempts failed"; the root cause says whether the
    port was refused, the name did not resolve or the certificate did not verify."""
    root: BaseException = exc
    for _ in range(8):  # chains are short; the bound only guards against a cycle
        cause = root.__cause__ or root.__context__
        if cause is None:
            break
        root = cause
    kind = type(exc).__name__ if root is exc else f"{type(exc).__name__} ({type(root).__name__})"
    text = str(root) or str(exc)
    return f"{kind}: {text}" if text else kind


def _decode(path: str, status: int, body: bytes, parse: Callable[[Any], T]) -> T:
    """Sort an answer: 5xx and bad bodies fail this URL; other non-2xx are definite refusals.

    501 is definite too: a virtual cluster (tenant) answers it on every node.
    """
    if status >= 500 and status != 501:
        raise _UrlFailed(f"HTTP {status}: {_text(body)}")
    if not 200 <= status < 300:
        raise _Refused(path, status, _text(body))
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise _UrlFailed(f"invalid JSON: {exc}") from None
    try:
        return parse(document)
    except PayloadError as exc:
        raise _UrlFailed(f"unexpected payload: {exc}") from None


def _text(body: bytes) -> str:
    """An error body as one short line (CockroachDB sends text/plain ending in a newline)."""
    text = " ".join(body.decode("utf-8", "replace").split())
    return text[:ERROR_TEXT_LIMIT] or "(empty body)"


def _session_token(body: Any) -> str:
    token = body.get("session") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise PayloadError("login: expected {\"session\": <token>}")
    return token


def _nodes_page(body: Any, *, offset: int) -> tuple[list[Node], int | None]:
    """A page of nodes and the next offset; a `next` that does not advance would loop."""
    nodes = parse_nodes(body)
    following = body.get("next")
    if following is None:
        return nodes, None
    if not isinstance(following, int) or isinstance(following, bool) or following <= offset:
        raise PayloadError(f"next: expected an offset after {offset}, got {following!r}")
    return nodes, following


def _local_node_id(body: Any) -> int | None:
    """`/nodes/local/ranges/`: the node that reported its first range, if it has any."""
    ranges = body.get("ranges") if isinstance(body, dict) else None
    if not ranges:
        return None
    if not isinstance(ranges, list) or not isinstance(ranges[0], dict):
        raise PayloadError("ranges: expected a list of objects")
    node_id = ranges[0].get("source_node_id")
    return node_id if isinstance(node_id, int) and not isinstance(node_id, bool) else None


def _hot_ranges_page(
    body: Any, *, sent: str | None
) -> tuple[list[HotRange], list[tuple[int, str]], str | None]:
    """A page of hot ranges, its `response_error`s and the next token (None: no more pages)."""
    ranges, errors = parse_hot_ranges(body)
    following = body.get("next")
    if following is not None and not isinstance(following, str):
        raise PayloadError(f"next: expected a token, got {type(following).__name__}")
    if ranges and following is not None and following == sent:
        raise PayloadError("next: the page token did not advance")
    return ranges, errors, following
