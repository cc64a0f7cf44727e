import asyncio
import email
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from apprise.decorators import notify
from pytest_httpserver import HTTPServer

from tests.conftest import NOTIFY_T0 as T0
from watchdog.alerts import Alert
from watchdog.config import Config, DeliveryConfig
from watchdog.notify import Deliverer, Dispatcher, Renderer, backoff, notify_test
from watchdog.store import OutboxEntry, Store

MakeAlert = Callable[..., Alert]
DELIVERY = DeliveryConfig(retry_initial=timedelta(seconds=1), retry_max=timedelta(seconds=10),
                          timeout=timedelta(seconds=2))
FROM_TO = "from=watchdog@example.com&to=oncall@example.com"


# Receivers -------------------------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on (for a receiver that is down, or started later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Mailbox:
    port: int
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def url(self, credentials: str = "") -> str:
        return f"mailto://{credentials}127.0.0.1:{self.port}?{FROM_TO}"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


def json_url(server: HTTPServer, path: str = "/hook") -> str:
    return f"json://127.0.0.1:{server.port}{path}"


def payloads(server: HTTPServer) -> list[Any]:
    return [request.get_json() for request, _ in server.log]


# In-process Apprise schemes: one that raises, one that is slow and counts its calls.

SLOW_CALLS: list[str] = []


@notify(on="wdboom")
def _boom(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    raise RuntimeError("plugin bug")


@notify(on="wdslow")
def _slow(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    SLOW_CALLS.append(title)
    time.sleep(0.3)
    return True


# The outbox ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db")
    yield store
    store.close()


def queue(store: Store, *urls: str, title: str = "[FIRING:1] NodeLivenessLost",
          body_format: str = "text") -> None:
    store.dispatch([OutboxEntry(channel="oncall", url=url, title=title, body="Node 1 is DEAD",
                                body_format=body_format, notify_type="failure",
                                created_at=T0, next_attempt_at=T0) for url in urls], {})


async def test_dispatched_alerts_reach_a_json_webhook_and_a_mailbox(
        store: Store, httpserver: HTTPServer, mailbox: Mailbox, make_alert: MakeAlert) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    config = Config.model_validate({
        "clusters": [{"name": "prod", "urls": ["http://crdb-1:8080"]}],
        "channels": {"oncall": {"urls": [json_url(httpserver), mailbox.url()]},
                     "mail": {"urls": [mailbox.url()], "format": "html"}},
        "routes": [{"channels": ["oncall", "mail"]}],
    })
    alerts = [make_alert(node_id="1"), make_alert(node_id="2")]
    Dispatcher(config, store, Renderer()).dispatch(alerts, T0)
    results = await Deliverer(store, DELIVERY).deliver_due(T0)
    assert [(r.channel, r.ok, r.reason) for r in results] == [
        ("oncall", True, "delivered"), ("oncall", True, "delivered"), ("mail", True, "delivered")]
    assert store.outbox() == []
    [payload] = payloads(httpserver)
    assert payload["title"] == "[FIRING:2] NodeLivenessLost"
    assert payload["type"] == "failure"
    assert "Node 1 is UNAVAILABLE" in payload["message"]
    assert "Node 2 is UNAVAILABLE" in payload["message"]
    assert [m["Subject"] for m in mailbox.messages] == ["[FIRING:2] NodeLivenessLost"] * 2
    html = [part.get_payload(decode=True).decode() for message in mailbox.messages
            for part in message.walk() if part.get_content_type() == "text/html"]
    assert any('<b>CRITICAL</b> NodeLivenessLost: Node 2 is UNAVAILABLE' in h for h in html)


async def test_receiver_down_keeps_the_entry_then_delivers_it_exactly_once(
        store: Store) -> None:
    port = free_port()
    queue(store, f"json://127.0.0.1:{port}/hook")
    deliverer = Deliverer(store, DELIVERY)
    [failed] = await deliverer.deliver_due(T0)
    assert not failed.ok
    assert "Connection error" in failed.reason
    [kept] = store.outbox()
    assert (kept.attempts, kept.next_attempt_at, kept.last_error) == (
        1, T0 + timedelta(seconds=1), failed.reason)
    assert await deliverer.deliver_due(T0 + timedelta(milliseconds=999)) == []
    receiver = HTTPServer(host="127.0.0.1", port=port)
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    receiver.start()
    try:
        [delivered] = await deliverer.deliver_due(T0 + timedelta(seconds=1))
        assert await deliverer.deliver_due(T0 + timedelta(hours=1)) == []
    finally:
        receiver.stop()
    assert delivered.ok
    assert len(receiver.log) == 1
    assert store.outbox() == []


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert [backoff(n, DELIVERY).total_seconds() for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert backoff(100_000, DELIVERY) == DELIVERY.retry_max


async def test_consecutive_emails_are_not_throttled(store: Store, mailbox: Mailbox) -> None:
    """Apprise sleeps 5.5 s between two sends of one email plugin unless told not to."""
    deliverer = Deliverer(store, DELIVERY)
    started = time.perf_counter()
    for title in ("first", "second"):
        queue(store, mailbox.url(), title=title)
        [result] = await deliverer.deliver_due(T0)
        assert result.ok
    assert time.perf_counter() - started < 2
    assert [m["Subject"] for m in mailbox.messages] == ["first", "second"]


async def test_several_targets_of_one_url_are_not_throttled(
        store: Store, httpserver: HTTPServer) -> None:
    """A fresh Apprise object is not enough: ntfy sleeps 5.5 s between its topics."""
    httpserver.expect_request("/", method="POST").respond_with_json({})
    queue(store, f"ntfy://127.0.0.1:{httpserver.port}/alerts/pages")
    started = time.perf_counter()
    [result] = await Deliverer(store, DELIVERY).deliver_due(T0)
    assert result.ok
    assert time.perf_counter() - started < 2
    assert sorted(p["topic"] for p in payloads(httpserver)) == ["alerts", "pages"]


async def test_deliveries_run_concurrently_and_a_crash_loses_nothing(
        store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    queue(store, "wdslow://", "wdboom://", "wdslow://", json_url(httpserver),
          "nosuchscheme://user:s3cret@host/TOKEN")
    started = time.perf_counter()
    results = await Deliverer(store, DELIVERY).deliver_due(T0)
    assert time.perf_counter() - started < 0.55
    assert [r.ok for r in results] == [True, False, True, True, False]
    assert results[4].url == "nosuchscheme://***"
    assert "cannot parse" in results[4].reason
    assert [e.url for e in store.outbox()] == ["wdboom://", "nosuchscheme://user:s3cret@host/TOKEN"]


async def test_overlapping_calls_never_send_an_entry_twice(store: Store) -> None:
    SLOW_CALLS.clear()
    queue(store, "wdslow://", title="once")
    deliverer = Deliverer(store, DELIVERY)
    first, second = await asyncio.gather(deliverer.deliver_due(T0), deliverer.deliver_due(T0))
    assert len(first) + len(second) == 1
    assert SLOW_CALLS == ["once"]


async def test_a_receiver_that_hangs_times_out(store: Store) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        queue(store, f"json://127.0.0.1:{silent.getsockname()[1]}/hook")
        deliverer = Deliverer(store, DeliveryConfig(timeout=timedelta(milliseconds=300)))
        [result] = await deliverer.deliver_due(T0)
    assert not result.ok
    assert "did not finish within" in result.reason
    assert result.elapsed < 1


async def test_failure_reason_survives_a_quiet_root_logger(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "level", logging.CRITICAL)
    monkeypatch.setattr(logging.getLogger("apprise"), "level", logging.NOTSET)
    queue(store, f"json://127.0.0.1:{free_port()}/hook")
    [result] = await Deliverer(store, DELIVERY).deliver_due(T0)
    assert "Connection error" in result.reason


async def test_secrets_in_urls_never_reach_logs_or_results(
        store: Store, mailbox: Mailbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    queue(store, mailbox.url("user:s3cret@"), f"json://user:s3cret@127.0.0.1:{free_port()}/h",
          f"json://127.0.0.1:{free_port()}/h?+X-Token=s3cret", "slak://user:s3cret@T000/B000")
    results = await Deliverer(store, DELIVERY).deliver_due(T0)
    assert [r.ok for r in results] == [False, False, False, False]
    assert results[0].url == f"mailto://user:****@127.0.0.1:{mailbox.port}/oncall%40example.com"
    assert results[1].url.startswith("json://user:****@127.0.0.1:")
    assert results[3].url == "slak://***"
    assert all(r.reason for r in results)
    shown = repr(results) + caplog.text + repr([e.last_error for e in store.outbox()])
    assert "s3cret" not in shown


async def test_notify_test_reports_each_url(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    results = await notify_test([json_url(httpserver), "nosuchscheme://x"], "test", "**hi**",
                                "markdown", channel="chat")
    assert [(r.channel, r.ok, r.entry_id) for r in results] == [
        ("chat", True, None), ("chat", False, None)]
    [payload] = payloads(httpserver)
    assert (payload["title"], payload["message"], payload["type"]) == ("test", "**hi**", "info")


async def test_term_scheme_prints_to_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    results = await notify_test(["term://", "term://stderr"], "[FIRING:1] X", "body", "text")
    assert all(r.ok for r in results)
    out, err = capsys.readouterr()
    assert out == err == "[FIRING:1] X\nbody\n\n"
