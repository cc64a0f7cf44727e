"""ClusterClient against real HTTP servers on 127.0.0.1 that answer like CockroachDB's API v2."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from watchdog.client import (
    SESSION_HEADER,
    ApiError,
    AuthenticationFailed,
    ClientStats,
    ClusterClient,
    ClusterError,
    ClusterUnreachable,
    PermissionDenied,
)
from watchdog.config import ClusterConfig

FIXTURES = Path(__file__).parent / "data"  # copies of /work/shared/reference/fixtures


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


AUTH_ERRORS = fixture("error_401.json")


def auth_error(status: int, when: str) -> str:
    """The text/plain body CockroachDB sends in the situation `when` describes."""
    return str(next(v["body"] for v in AUTH_ERRORS["variants"]
                    if v["status"] == status and when in v["when"]))


SESSION_REJECTED = AUTH_ERRORS["response"]["body"]
BAD_CREDENTIALS = auth_error(401, "wrong password")
PASSWORD_EXPIRED = auth_error(401, "expired password")
NOT_ALLOWED = auth_error(403, "lacks admin")
TOKEN = fixture("login.json")["session"]
PASSWORD = "correct-horse-battery-staple"
URL_SECRET = "url-secret-9d1f"
INTERNAL_ERROR = ("An internal server error has occurred. "
                  "Please check your CockroachDB logs for more details.\n")
TEXT = "text/plain; charset=utf-8"
ANY_PATH = re.compile(".*")


def json_response(body: Any) -> Response:
    return Response(json.dumps(body), 200, content_type="application/json")


def text_response(text: str, status: int) -> Response:
    return Response(text, status, content_type=TEXT)


def base_url(server: HTTPServer) -> str:
    return server.url_for("/").rstrip("/")


def data_requests(server: HTTPServer) -> list[Request]:
    return [request for request, _ in server.log if request.path != "/api/v2/login/"]


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class FakeCluster:
    """CockroachDB's session rules: a token from any node is valid on every node until revoked."""

    def __init__(self, *servers: HTTPServer) -> None:
        self.servers: list[HTTPServer] = []
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.logins: list[dict[str, str]] = []
        self.password = PASSWORD
        for server in servers:
            self.attach(server)

    def attach(self, server: HTTPServer) -> None:
        self.servers.append(server)
        server.expect_request("/api/v2/login/", method="POST").respond_with_handler(self._login)

    def serve(self, path: str, body: Any, query_string: dict[str, str] | None = None) -> None:
        def handler(request: Request) -> Response:
            if request.headers.get(SESSION_HEADER) not in self.valid:
                return text_response(SESSION_REJECTED, 401)
            return json_response(body)

        for server in self.servers:
            server.expect_request(path, query_string=query_string).respond_with_handler(handler)

    def revoke(self) -> None:
        self.valid.clear()

    def _login(self, request: Request) -> Response:
        self.logins.append(request.form.to_dict())
        if request.form.get("password") != self.password:
            return text_response(BAD_CREDENTIALS, 401)
        token = TOKEN if not self.issued else base64.b64encode(
            f"session-{len(self.issued)}".encode()).decode()
        self.issued.append(token)
        self.valid.add(token)
        return json_response({"session": token})


@pytest.fixture(scope="module")
def started_servers() -> Iterator[list[HTTPServer]]:
    """Started once: stopping a werkzeug server takes up to half a second."""
    servers = [HTTPServer(host="127.0.0.1", port=0, threaded=True) for _ in range(3)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def servers(started_servers: list[HTTPServer]) -> Iterator[list[HTTPServer]]:
    """Three nodes; a request no handler expected fails the test."""
    yield started_servers
    try:
        for server in started_servers:
            server.check()
    finally:
        for server in started_servers:
            server.clear()


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


Connect = Callable[..., ClusterClient]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    clients: list[ClusterClient] = []

    def make(*urls: str, max_body_bytes: int = 64 * 2**20, **settings: Any) -> ClusterClient:
        config = ClusterConfig(**{"name": "prod", "urls": list(urls), "password": PASSWORD,
                                  "timeout": timedelta(seconds=2), **settings})
        client = ClusterClient(config, max_body_bytes=max_body_bytes)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


# --- login and session ----------------------------------------------------------------------


async def test_logs_in_once_with_form_fields_and_sends_the_session_on_every_call(
    servers: list[HTTPServer], connect: Connect
) -> None:
    node = servers[0]
    cluster = FakeCluster(node)
    cluster.serve("/api/v2/nodes/", fixture("nodes_3_live.json"))
    cluster.serve("/api/v2/events/", fixture("events.json"))
    client = connect(base_url(node))

    for _ in range(3):
        assert [n.node_id for n in await client.nodes()] == [1, 2, 3]
    assert len(await client.events()) == 9

    assert cluster.logins == [{"username": "root", "password": PASSWORD}]
    login = node.log[0][0]
    assert login.mimetype == "application/x-www-form-urlencoded"
    assert [r.headers.get(SESSION_HEADER) for r in data_requests(node)] == [TOKEN] * 4
    assert client.stats == ClientStats(requests=5, logins=1, failovers=0)


async def test_rejected_session_gets_one_fresh_login_and_one_retry(
    servers: list[HTTPServer], connect: Connect
) -> None:
    node = servers[0]
    cluster = FakeCluster(node)
    cluster.serve("/api/v2/nodes/", fixture("nodes_3_live.json"))
    client = connect(base_url(node))
    await client.nodes()

    cluster.revoke()
    assert len(await client.nodes()) == 3

    assert len(cluster.logins) == 2
    sent = [r.headers.get(SESSION_HEADER) for r in data_requests(node)]
    assert sent == [TOKEN, TOKEN, cluster.issued[1]]
    assert client.stats.requests == 5


async def test_concurrent_calls_share_one_login_and_one_relogin(
    servers: list[HTTPServer], connect: Connect
) -> None:
    node = servers[0]
    cluster = FakeCluster(node)
    cluster.serve("/api/v2/nodes/", fixture("nodes_3_live.json"))
    client = connect(base_url(node))

    await asyncio.gather(*(client.nodes() for _ in range(5)))
    assert len(cluster.logins) == 1

    cluster.revoke()
    results = await asyncio.gather(*(client.nodes() for _ in range(5)))

    assert all(len(nodes) == 3 for nodes in results)
    assert len(cluster.logins) == 2
    sent = [r.headers.get(SESSION_HEADER) for r in data_requests(node)]
    assert sent == [TOKEN] * 10 + [cluster.issued[1]] * 5, "all five were rejected together"
    assert client.stats.logins == 2


@pytest.mark.parametrize("server_text", [BAD_CREDENTIALS, PASSWORD_EXPIRED],
                         ids=["bad-credentials", "password-expired"])
async def test_refused_login_raises_authentication_failed_with_the_server_text_once(
    servers: list[HTTPServer], connect: Connect, server_text: str
) -> None:
    node = servers[0]
    node.expect_request("/api/v2/login/", method="POST").respond_with_response(
        text_response(server_text, 401))
    client = connect(base_url(node))

    results = await asyncio.gather(client.nodes(), client.events(), client.hot_ranges(),
                                   return_exceptions=True)

    assert all(isinstance(r, AuthenticationFailed) for r in results)
    assert server_text.strip() in str(results[0])
    assert len(node.log) == 1, "one login for the whole wave, no data request, no retry"
    assert client.stats.logins == 1


async def test_session_rejected_right_after_login_raises_instead_of_looping(
    servers: list[HTTPServer], connect: Connect
) -> None:
    node = servers[0]
    cluster = FakeCluster(node)
    node.expect_request("/api/v2/nodes/").respond_with_response(
        text_response(SESSION_REJECTED, 401))
    client = connect(base_url(node))

    with pytest.raises(AuthenticationFailed, match="could not be validated"):
        await client.nodes()

    assert len(cluster.logins) == 2
    assert len(data_requests(node)) == 2


async def test_without_a_password_no_login_and_no_header_then_401_asks_for_one(
    servers: list[HTTPServer], connect: Connect
) -> None:
    node = servers[0]
    node.expect_oneshot_request("/api/v2/nodes/").respond_with_json(
        fixture("nodes_3_live.json"))
    node.expect_request("/api/v2/nodes/").respond_with_response(
        text_response(auth_error(401, "header missing"), 401))
    client = connect(base_url(node), password=None)

    assert len(await client.nodes()) == 3
    with pytest.raises(AuthenticationFailed, match="password"):
        await client.nodes()

    assert [r.path for r, _ in node.log] == ["/api/v2/nodes/"] * 2
    assert all(SESSION_HEADER not in r.headers for r, _ in node.log)
    assert client.stats.logins == 0


async def test_forbidden_raises_permission_denied_naming_the_privileges_without_failover(
    servers: list[HTTPServer], connect: Connect
) -> None:
    node, other = servers[:2]
    FakeCluster(node)
    node.expect_request("/api/v2/nodes/").respond_with_response(text_response(NOT_ALLOWED, 403))
    client = connect(base_url(node), base_url(other))

    with pytest.raises(PermissionDenied) as caught:
        await client.nodes()

    message = str(caught.value)
    assert "admin" in message
    assert "VIEWCLUSTERMETADATA" in message
    assert NOT_ALLOWED.strip() in message
    assert other.log == []


@pytest.mark.parametrize(("status", "body"), [
    (404, "404 page not found\n"),
    (400, auth_error(400, "not valid standard base64")),
    (501, "Not Available on Tenants\n"),
])
async def test_other_client_errors_raise_api_error_without_failover(
    servers: list[HTTPServer], connect: Connect, status: int, body: str
) -> None:
    node, other = servers[:2]
    FakeCluster(node)
    node.expect_request("/api/v2/events/").respond_with_response(text_response(body, status))
    client = connect(base_url(node), base_url(other))

    with pytest.raises(ApiError) as caught:
        await client.events()

    assert (caught.value.status, caught.value.text) == (status, body.strip())
    assert body.strip() in str(caught.value)
    assert other.log == []


# --- failover -------------------------------------------------------------------------------


def refuse(server: HTTPServer, cluster: FakeCluster, closed_url: str) -> str:
    return closed_url


def answer_500(server: HTTPServer, cluster: FakeCluster, closed_url: str) -> str:
    server.expect_request(ANY_PATH).respond_with_response(text_response(INTERNAL_ERROR, 500))
    return base_url(server)


def answer_garbage(server: HTTPServer, cluster: FakeCluster, closed_url: str) -> str:
    server.expect_request(ANY_PATH).respond_with_data("<html>bad gateway</html>", 200)
    return base_url(server)


def answer_wrong_shape(server: HTTPServer, cluster: FakeCluster, closed_url: str) -> str:
    server.expect_request("/api/v2/nodes/").respond_with_json({"nodes": {"node_id": 1}})
    cluster.attach(server)
    return base_url(server)


@pytest.mark.parametrize("breaker", [refuse, answer_500, answer_garbage, answer_wrong_shape],
                         ids=["refused", "http-500", "garbage-json", "wrong-shape"])
async def test_fails_over_to_the_next_url_and_tries_the_good_one_first_next_time(
    servers: list[HTTPServer], connect: Connect, closed_url: str,
    breaker: Callable[[HTTPServer, FakeCluster, str], str],
) -> None:
    broken, good = servers[:2]
    cluster = FakeCluster(good)
    first_url = breaker(broken, cluster, closed_url)
    cluster.serve("/api/v2/nodes/", fixture("nodes_3_live.json"))
    client = connect(first_url, base_url(good))

    assert len(await client.nodes()) == 3
    broken_requests = len(broken.log)
    requests = client.stats.requests
    assert len(await client.nodes()) == 3

    assert client.stats.failovers == 1
    assert len(broken.log) == broken_requests
    assert client.stats.requests == requests + 1, "steady state: one request per call"


async def test_a_url_that_times_out_fails_over(
    servers: list[HTTPServer], connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    slow, good = servers[:2]
    release = threading.Event()

    def stall(request: Request) -> Response:
        release.wait(5)
        return json_response(fixture("nodes_3_live.json"))

    slow.expect_request("/api/v2/nodes/").respond_with_handler(stall)
    good.expect_request("/api/v2/nodes/").respond_with_json(fixture("nodes_3_live.json"))
    client = connect(base_url(slow), base_url(good), password=None,
                     timeout=timedelta(milliseconds=200))
    caplog.set_level(logging.INFO, logger="watchdog.client")

    started = time.perf_counter()
    assert len(await client.nodes()) == 3

    assert time.perf_counter() - started < 1
    assert client.stats.failovers == 1
    assert "timed out after 0.2 s" in caplog.text
    release.set()
    await until(lambda: len(slow.log) == 1)


async def test_every_url_failing_raises_cluster_unreachable_with_a_reason_per_url(
    servers: list[HTTPServer], connect: Connect, closed_url: str
) -> None:
    erroring, wrong = servers[:2]
    erroring.expect_request(ANY_PATH).respond_with_response(text_response(INTERNAL_ERROR, 500))
    cluster = FakeCluster(wrong)
    wrong.expect_request("/api/v2/nodes/").respond_with_json({"nodes": [{"node_id": "one"}]})
    client = connect(closed_url, base_url(erroring), base_url(wrong))

    with pytest.raises(ClusterUnreachable) as caught:
        await client.nodes()

    reasons = caught.value.reasons
    assert list(reasons) == [base_url(wrong), closed_url, base_url(erroring)]
    assert "ConnectionRefusedError" in reasons[closed_url]
    assert reasons[base_url(erroring)] == f"HTTP 500: {INTERNAL_ERROR.strip()}"
    assert reasons[base_url(wrong)].startswith("unexpected payload: nodes[0].")
    assert all(reason in str(caught.value) for reason in reasons.values())
    assert len(cluster.logins) == 1


# --- the sources ----------------------------------------------------------------------------


async def test_nodes_are_paged_by_offset_until_next_is_absent(
    servers: list[HTTPServer], connect: Connect
) -> None:
    node = servers[0]
    cluster = FakeCluster(node)
    all_nodes = fixture("nodes_3_live.json")["nodes"]
    cluster.serve("/api/v2/nodes/", {"nodes": all_nodes[:2], "next": 2},
                  query_string={"limit": "500", "offset": "0"})
    cluster.serve("/api/v2/nodes/", {"nodes": all_nodes[2:]},
                  query_string={"limit": "500", "offset": "2"})
    client = connect(base_url(node))

    assert [n.node_id for n in await client.nodes()] == [1, 2, 3]
    assert len(data_requests(node)) == 2


async def test_events_always_send_limit_and_offset(
    servers: list[HTTPServer], connect: Connect
) -> None:
    node = servers[0]
    cluster = FakeCluster(node)
    cluster.serve("/api/v2/events/", fixture("events.json"))
    client = connect(base_url(node))

    events = await client.events()
    await client.events(limit=5, offset=10)

    assert events[0].event_type == "create_database"
    assert [r.args.to_dict() for r in data_requests(node)] == [
        {"limit": "100", "offset": "0"}, {"limit": "5", "offset": "10"}]
    with pytest.raises(ValueError, match="limit"):
        await client.events(limit=0)


async def test_hot_ranges_page_by_start_token_until_an_empty_page(
    servers: list[HTTPServer], connect: Connect
) -> None:
    node = servers[0]
    cluster = FakeCluster(node)
    node_down, full = fixture("ranges_hot_node_down.json"), fixture("ranges_hot.json")
    cluster.serve("/api/v2/ranges/hot/", {**node_down, "next": "tok-1"},
                  query_string={"limit": "50"})
    cluster.serve("/api/v2/ranges/hot/", {**full, "next": "tok-2"},
                  query_string={"limit": "50", "start": "tok-1"})
    cluster.serve("/api/v2/ranges/hot/", {"ranges": None, "next": "tok-3"},
                  query_string={"limit": "50", "start": "tok-2"})
    client = connect(base_url(node))

    ranges, errors = await client.hot_ranges(page_size=50)

    range_ids = [r.range_id for r in ranges]
    assert sorted(range_ids) == sorted({r["range_id"] for r in full["ranges"]})
    assert len(range_ids) == len(set(range_ids))
    down = node_down["response_error"][0]
    assert errors == [(down["node_id"], down["error_message"])]
    assert len(data_requests(node)) == 3


@pytest.mark.parametrize(("source", "path", "page", "reason"), [
    ("nodes", "/api/v2/nodes/", {"nodes": [], "next": 0}, "expected an offset after 0"),
    ("hot_ranges", "/api/v2/ranges/hot/",
     {**fixture("ranges_hot.json"), "next": "tok"}, "did not advance"),
])
async def test_paging_that_does_not_advance_fails_instead_of_looping(
    servers: list[HTTPServer], connect: Connect, source: str, path: str, page: Any, reason: str
) -> None:
    node = servers[0]
    node.expect_request(path).respond_with_json(page)
    client = connect(base_url(node), password=None)

    with pytest.raises(ClusterUnreachable, match=reason):
        await getattr(client, source)()


async def test_health_asks_every_url_without_a_session_and_reports_down_urls_as_data(
    servers: list[HTTPServer], connect: Connect, closed_url: str
) -> None:
    healthy, draining, broken = servers
    healthy.expect_request("/api/v2/health/").respond_with_json(fixture("health_ok.json"))
    draining.expect_request("/api/v2/health/", query_string={"ready": "true"}) \
        .respond_with_response(text_response(INTERNAL_ERROR, 500))
    draining.expect_request("/api/v2/health/", query_string="").respond_with_json({})
    broken.expect_request("/api/v2/health/").respond_with_response(
        text_response(INTERNAL_ERROR, 500))
    urls = [base_url(healthy), base_url(draining), base_url(broken), closed_url]
    client = connect(*urls)

    items = await client.health()

    assert [i.url for i in items] == urls
    assert [(i.ok, i.ready, i.status) for i in items] == [
        (True, True, 200), (True, False, 200), (False, False, 500), (False, False, None)]
    assert [i.error for i in items[:2]] == [None, None]
    assert items[2].error == f"HTTP 500: {INTERNAL_ERROR.strip()}"
    assert items[3].error is not None and "ConnectionRefusedError" in items[3].error
    assert all(i.latency is not None and i.latency > 0 for i in items[:3])
    assert items[3].latency is None
    assert all(i.node_id is None for i in items)
    sent = [r for server in servers for r, _ in server.log]
    assert len(sent) == 6
    assert all(SESSION_HEADER not in r.headers for r in sent)
    assert client.stats.logins == 0


def chunked(body: bytes) -> Response:
    """No Content-Length: the size is only known by reading."""
    return Response((body[i:i + 1000] for i in range(0, len(body), 1000)),
                    content_type="application/json")


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_the_cap_fails_the_url(
    servers: list[HTTPServer], connect: Connect, framing: str
) -> None:
    node = servers[0]
    body = (FIXTURES / "nodes_3_live.json").read_bytes()
    assert len(body) > 4096
    response = chunked(body) if framing == "chunked" else Response(
        body, content_type="application/json")
    node.expect_request("/api/v2/nodes/").respond_with_response(response)
    client = connect(base_url(node), password=None, max_body_bytes=4096)

    with pytest.raises(ClusterUnreachable) as caught:
        await client.nodes()

    assert caught.value.reasons == {base_url(node): "response larger than 4096 bytes"}


# --- secrets and TLS ------------------------------------------------------------------------


async def test_secrets_stay_out_of_logs_errors_and_repr(
    servers: list[HTTPServer], connect: Connect, closed_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    node, erroring = servers[:2]
    caplog.set_level(logging.DEBUG)
    cluster = FakeCluster(node)
    cluster.serve("/api/v2/nodes/", fixture("nodes_3_live.json"))
    node.expect_request("/api/v2/events/").respond_with_response(text_response(NOT_ALLOWED, 403))
    erroring.expect_request(ANY_PATH).respond_with_response(text_response(INTERNAL_ERROR, 500))
    with_credentials = base_url(node).replace("://", f"://watch:{URL_SECRET}@")
    down = closed_url.replace("://", f"://watch:{URL_SECRET}@")
    client = connect(with_credentials, down, base_url(erroring))
    errors: list[Exception] = []

    await client.nodes()
    cluster.revoke()
    await client.nodes()
    with pytest.raises(PermissionDenied) as denied:
        await client.events()
    errors.append(denied.value)
    cluster.revoke()
    cluster.password = "rotated-on-the-server"
    with pytest.raises(AuthenticationFailed) as refused:
        await client.nodes()
    errors.append(refused.value)
    node.clear()
    node.expect_request(ANY_PATH).respond_with_response(text_response(INTERNAL_ERROR, 500))
    with pytest.raises(ClusterUnreachable) as unreachable:
        await client.hot_ranges()
    errors.append(unreachable.value)

    assert "logged in" in caplog.text and "HTTP Request" in caplog.text
    assert closed_url in str(unreachable.value)
    texts = [caplog.text, repr(client), *map(str, errors), *map(repr, errors)]
    for secret in [PASSWORD, URL_SECRET, *cluster.issued]:
        assert not [text for text in texts if secret in text], secret


async def test_secrets_stay_out_of_urls_but_url_credentials_still_go_as_basic_auth(
    servers: list[HTTPServer], connect: Connect
) -> None:
    node = servers[0]
    node.expect_request("/api/v2/events/").respond_with_json(fixture("events.json"))
    client = connect(base_url(node).replace("://", f"://watch:{URL_SECRET}@"), password=None)

    await client.events()

    request = node.log[0][0]
    assert request.authorization is not None
    assert (request.authorization.username, request.authorization.password) == (
        "watch", URL_SECRET)
    assert URL_SECRET not in repr(client)


def test_an_unreadable_ca_cert_fails_at_construction(tmp_path: Path) -> None:
    config = ClusterConfig(name="prod", urls=["https://127.0.0.1:8080"],
                           ca_cert=tmp_path / "missing.crt")

    with pytest.raises(ClusterError, match="cannot load ca_cert"):
        ClusterClient(config)


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, HTTPServer]]:
    """A CA, a node certificate for 127.0.0.1 it signed, and an HTTPS server using it."""
    pki = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True)

    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec_key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=watchdog test CA")
    openssl("req", *ec_key, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=node1")
    (pki / "node.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "node.ext", "-out", "node.crt")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "node.crt", pki / "node.key")
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    yield pki / "ca.crt", server
    server.stop()


async def test_https_verifies_against_the_configured_ca(
    private_ca: tuple[Path, HTTPServer], connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    ca_cert, server = private_ca
    server.clear()
    server.expect_request("/api/v2/events/").respond_with_json(fixture("events.json"))
    url = base_url(server)
    assert url.startswith("https://")

    with pytest.raises(ClusterUnreachable) as caught:
        await connect(url, password=None).events()
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.reasons[url]

    assert len(await connect(url, password=None, ca_cert=ca_cert).events()) == 9

    caplog.set_level(logging.WARNING, logger="watchdog.client")
    unverified = connect(url, password=None, tls_verify=False)
    for _ in range(2):
        assert len(await unverified.events()) == 9
    assert caplog.text.count("verification is disabled") == 1
    server.check()
