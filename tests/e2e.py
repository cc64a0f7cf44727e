"""Helpers for end-to-end tests: a `crdb-watchdog run` process and a webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from watchdog.cli import load_all
from watchdog.config import Source
from watchdog.service import Round, Watchdog
from watchdog.store import Store


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


class Receiver:
    """A webhook receiver behind `json://127.0.0.1:PORT/hook`: records every payload.

    `up` False: it answers 503. `answering` cleared: it records a payload, then leaves the
    sender waiting for an answer until the event is set again (a receiver that hangs).
    """

    def __init__(self, port: int = 0) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.received_at: list[float] = []
        self.up = True
        self.answering = threading.Event()
        self.answering.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not receiver.up:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.payloads.append(json.loads(body))
                receiver.received_at.append(time.monotonic())
                receiver.answering.wait()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self._server.server_address[1]}/hook"

    def titles(self, prefix: str = "") -> list[str]:
        return [p["title"] for p in self.payloads if p["title"].startswith(prefix)]

    def close(self) -> None:
        self.answering.set()
        self._server.shutdown()
        self._server.server_close()


def cluster_block(name: str, urls: list[str], *, interval: str = "300ms", timeout: str = "1s",
                  password: str = "secret", unreachable_after: int = 3) -> str:
    """One entry of `clusters:`, polling every source every `interval`."""
    return f"""\
  - name: {name}
    urls: {json.dumps(urls)}
    password: {password}
    intervals: {{health: {interval}, nodes: {interval}, events: {interval}}}
    timeout: {timeout}
    unreachable_after: {unreachable_after}
"""


def write_clusters_config(path: Path, clusters: list[str], receiver_url: str | list[str], *,
                          rules: list[str] | None = None, extra: str = "") -> Path:
    """A config of the given `clusters:` entries and one channel, `hook`, of the receiver's
    URL (or URLs), routed with short timers; the state beside it; `extra` is appended."""
    rules_line = f"rules: {json.dumps(rules)}\n" if rules is not None else ""
    channel_urls = [receiver_url] if isinstance(receiver_url, str) else receiver_url
    path.write_text(f"""\
clusters:
{"".join(clusters)}{rules_line}channels:
  hook: {{urls: {json.dumps(channel_urls)}}}
routes:
  - channels: [hook]
    group_wait: 0s
    group_interval: 500ms
    repeat_interval: 1h
state: {path.parent / "state.db"}
delivery: {{retry_initial: 200ms, retry_max: 1s}}
http: {{listen: "127.0.0.1:0"}}
{extra}""")
    return path


def write_config(path: Path, urls: list[str], receiver_url: str | list[str], *,
                 interval: str = "300ms", password: str = "secret", unreachable_after: int = 3,
                 rules: list[str] | None = None, extra: str = "") -> Path:
    """One simulated cluster, `sim`, and the receiver's channel."""
    cluster = cluster_block("sim", urls, interval=interval, password=password,
                            unreachable_after=unreachable_after)
    return write_clusters_config(path, [cluster], receiver_url, rules=rules, extra=extra)


class WatchdogProcess:
    """`crdb-watchdog run -c CONFIG` as a child process, its output kept for assertions."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.parent / "watchdog.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "watchdog", "run", "-c", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def outbox_empty(self) -> bool:
        """Every notification recorded as delivered: a kill now cannot cause a resend (the
        receiver having a page is not enough: the watchdog may not have its answer yet)."""
        with contextlib.closing(sqlite3.connect(self.config.parent / "state.db")) as db:
            return db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_watchdog(config: Path) -> Iterator[WatchdogProcess]:
    process = WatchdogProcess(config)
    process.start()
    try:
        yield process
    except BaseException:
        print(f"--- crdb-watchdog output ({process.log}) ---\n{process.output()}")
        raise
    finally:
        if process.running:
            process.kill9()


class Harness:
    """An in-process Watchdog over a config file, driven poll by poll, restartable on the
    same state file: each test says exactly which round sees what."""

    def __init__(self, path: Path) -> None:
        self.config, self.rules = load_all(path)
        self.store = Store(self.config.state)
        self.watchdog = Watchdog(self.config, self.rules, self.store)

    async def round(self, *sources: Source, cluster: str = "sim") -> list[Round]:
        done = [await self.watchdog.poll(cluster, source) for source in sources]
        await self.watchdog.notify_pass()
        return done

    async def after_group_interval(self) -> None:
        """Notify what a route held back because it had notified its group just before."""
        await asyncio.sleep(max(r.group_interval for r in self.config.routes).total_seconds())
        await self.watchdog.notify_pass()

    async def restart(self) -> None:
        await self.close()
        self.store = Store(self.config.state)
        self.watchdog = Watchdog(self.config, self.rules, self.store)

    async def close(self) -> None:
        await self.watchdog.close()
        self.store.close()
