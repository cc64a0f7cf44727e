"""Security: secrets never leave the process, the status server stays on loopback.

TLS verification by default (refused without `ca_cert`, accepted with it) is proven in
tests/test_client.py::test_https_verifies_against_the_configured_ca.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.e2e import Receiver, wait_until, write_config
from tests.service_helpers import ServiceProcess, running_service
from tests.test_notify_deliver import free_port
from watchdog.config import load_config
from watchdog.simulator import SimConfig, SimulatedCluster

CLUSTER_PASSWORD = f"crdb-pw-{secrets.token_hex(8)}"
WEBHOOK_TOKEN = secrets.token_hex(16)
SMTP_PASSWORD = f"smtp-pw-{secrets.token_hex(8)}"
HTTP_TOKEN = f"bearer-{secrets.token_hex(12)}"
DEFAULT_LISTEN = ("127.0.0.1", 9184)


def session_tokens(cluster: SimulatedCluster) -> set[str]:
    """The session tokens the cluster has handed out and still honours, as the watchdog sends
    them (X-Cockroach-API-Session). Read from the simulator's own table: no API shows them."""
    return {base64.b64encode(cookie).decode() for cookie in cluster._sessions}


def cli(config: Path, *args: str) -> str:
    """A `crdb-watchdog` command's stdout and stderr together."""
    done = subprocess.run([sys.executable, "-m", "watchdog", *args, "-c", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def api(service: ServiceProcess, path: str, token: str | None = HTTP_TOKEN) -> str:
    request = urllib.request.Request(service.status_url() + path)  # noqa: S310 - loopback
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return f"{response.status} {response.read().decode()}"
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.read().decode()}"


@pytest.fixture
def guarded() -> Iterator[tuple[SimulatedCluster, Receiver]]:
    with SimulatedCluster(SimConfig(nodes=3, liveness_ttl=1.0,
                                    password=CLUSTER_PASSWORD)) as cluster:
        receiver = Receiver()
        yield cluster, receiver
        receiver.close()


def test_no_secret_appears_in_logs_errors_api_bodies_or_command_output(
        tmp_path: Path, guarded: tuple[SimulatedCluster, Receiver]) -> None:
    """Every secret the service holds goes through what a person or a log pipeline sees:
    debug logs, failed logins and deliveries, `/api/*`, `once --json`, `status --json`."""
    cluster, receiver = guarded
    mail = (f"mailto://watchdog:{SMTP_PASSWORD}@127.0.0.1:{free_port()}"
            "?from=watchdog@example.com&to=oncall@example.com")  # nothing listens: it fails
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls,
                          [f"{receiver.url}/{WEBHOOK_TOKEN}", mail], password=CLUSTER_PASSWORD)
    config.write_text(config.read_text().replace(
        'http: {listen: "127.0.0.1:0"}', f'http: {{listen: "127.0.0.1:0", token: {HTTP_TOKEN}}}'))
    seen: dict[str, str] = {}
    tokens: set[str] = set()
    with running_service(config, {}, ("--log-level", "debug")) as service:
        seen["silence add"] = cli(config, "silence", "add", "--match", "node_id=3",
                                  "--duration", "1h", "--comment", "disk swap")
        cluster.kill(2)
        wait_until(lambda: receiver.payloads)
        wait_until(lambda: "failed (attempt 2)" in service.output())
        for path in ("/api/alerts", "/api/silences", "/healthz", "/metrics"):
            seen[path] = api(service, path)
        seen["/api/alerts without the token"] = api(service, "/api/alerts", token=None)
        tokens |= session_tokens(cluster)
        seen["once --json"] = cli(config, "once", "--json", "--dry-run")
        seen["status --json"] = cli(config, "status", "--json")
        tokens |= session_tokens(cluster)
        cluster.set_password("rotated")
        cluster.expire_sessions()
        wait_until(lambda: "was refused" in service.output())
        seen["once --json, login refused"] = cli(config, "once", "--json", "--dry-run")
        seen["status --json, login refused"] = cli(config, "status", "--json")
        service.terminate()
        seen["log"] = service.output()
    seen["pages"] = json.dumps(receiver.payloads)
    assert len(tokens) >= 2, "the service and `once` each logged in"
    assert "was refused" in seen["once --json, login refused"]
    assert '"NodeLivenessLost"' in seen["/api/alerts"]
    assert "disk swap" in seen["/api/silences"]
    for secret in (CLUSTER_PASSWORD, WEBHOOK_TOKEN, SMTP_PASSWORD, HTTP_TOKEN, *tokens):
        for form in {secret, quote(secret, safe="")}:
            leaks = [where for where, text in seen.items() if form in text]
            assert not leaks, f"a secret ({secret[:6]}…) appears in: {', '.join(leaks)}"


def listeners(port: int) -> set[str]:
    """The addresses a TCP socket listens on at `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, words))
    return found


def test_the_status_server_listens_on_loopback_unless_told_otherwise(
        tmp_path: Path, cluster: SimulatedCluster, receiver: Receiver) -> None:
    config = write_config(tmp_path / "watchdog.yaml", cluster.urls, receiver.url)
    config.write_text(config.read_text().replace('http: {listen: "127.0.0.1:0"}\n', ""))
    assert load_config(config).http.listen == "127.0.0.1:9184"
    if listeners(DEFAULT_LISTEN[1]):
        pytest.skip("port 9184 is taken on this machine")
    with running_service(config, {}) as service:
        assert service.status_url() == "http://127.0.0.1:9184"
        assert listeners(DEFAULT_LISTEN[1]) == {"127.0.0.1"}
