"""Helpers for the service tests: a real $NOTIFY_SOCKET, a multi-cluster config, a process
with its own environment, and plain HTTP GETs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e import WatchdogProcess, wait_until, write_clusters_config


@dataclass(frozen=True)
class Datagram:
    at: float
    fields: dict[str, str]


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket (abstract, so no path limits)."""

    def __init__(self) -> None:
        self.address = f"@crdb-watchdog-test-{uuid.uuid4().hex}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + self.address[1:])
        self._socket.settimeout(0.1)
        self.received: list[Datagram] = []
        self._open = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while self._open:
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append(Datagram(time.monotonic(), fields))

    def times(self, key: str, value: str = "1", since: float = 0.0) -> list[float]:
        return [d.at for d in list(self.received) if d.fields.get(key) == value and d.at >= since]

    def statuses(self) -> list[str]:
        return [d.fields["STATUS"] for d in list(self.received) if "STATUS" in d.fields]

    def sequence(self) -> list[str]:
        """The state messages in order (READY, RELOADING, STOPPING), keep-alives left out."""
        keys = ("READY", "RELOADING", "STOPPING")
        return [key for d in list(self.received) for key in keys if key in d.fields]

    def close(self) -> None:
        self._open = False
        self._thread.join(1)
        self._socket.close()


class HeartbeatReceiver:
    """Counts GETs, as a healthchecks-style ping endpoint would."""

    def __init__(self) -> None:
        self.hits: list[float] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                receiver.hits.append(time.monotonic())
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/ping/0f4c6a5e-heartbeat-uuid"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


LIVENESS_RULE = """\
rules:
  - alert: NodeLivenessLost
    source: nodes
    each: node
    when: node.liveness in ('UNAVAILABLE', 'DEAD')
    severity: critical
    summary: "Node {{ node.node_id }} ({{ node.address }}) is {{ node.liveness }}"
"""


def write_service_config(path: Path, clusters: list[str], receiver_url: str, *,
                         rules: list[str] | None = None, extra: str = "") -> Path:
    """Without `rules`, one liveness rule of its own: these tests are about the service, not
    about the built-in pack, which grows."""
    if rules is None:
        (path.parent / "liveness.yaml").write_text(LIVENESS_RULE)
        rules = [str(path.parent / "liveness.yaml")]
    return write_clusters_config(path, clusters, receiver_url, rules=rules, extra=extra)


class ServiceProcess(WatchdogProcess):
    """`crdb-watchdog [options] run` with a given environment (NOTIFY_SOCKET, WATCHDOG_USEC)."""

    def __init__(self, config: Path, env: dict[str, str], options: tuple[str, ...] = ()) -> None:
        super().__init__(config)
        self.env = env
        self.options = options

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "watchdog", *self.options, "run", "-c", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def status_url(self) -> str:
        """The status server's address, from its start-up log line (it listens on port 0)."""
        def find() -> str | None:
            for line in self.output().splitlines():
                if "serving /metrics" in line:
                    return line.rsplit(" on ", 1)[1].split()[0].rstrip('",}')
            return None
        url: str = wait_until(find, timeout=15)
        return url


@contextmanager
def running_service(config: Path, env: dict[str, str],
                    options: tuple[str, ...] = ()) -> Iterator[ServiceProcess]:
    process = ServiceProcess(config, env, options)
    process.start()
    try:
        yield process
    finally:
        if process.running:
            process.kill9()


def http_get(url: str) -> tuple[int, dict[str, str], bytes]:
    """GET a loopback URL: (status, headers, body), error statuses included."""
    assert url.startswith("http://127.0.0.1:")
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - checked above
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
