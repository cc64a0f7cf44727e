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
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

from tests.conftest import NOTIFY_T0 as T0
from watchdog.alerts import Alert
from watchdog.cli import main
from watchdog.config import ChannelConfig, Config, DeliveryConfig
from watchdog.notify import Deliverer, Dispatcher, Renderer, backoff, notify_test
from watchdog.store import NodeInfo, OutboxEntry, Store

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


def payloads(server: HTTPServer, path: str | None = None) -> list[Any]:
    """The JSON bodies received (at `path` only, if given)."""
    return [request.get_json() for request, _ in server.log if path in (None, request.path)]


def html_parts(message: Message) -> list[str]:
    return [part.get_payload(decode=True).decode() for part in message.walk()
            if part.get_content_type() == "text/html"]


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
    results = await Deliverer(store, DELIVERY, {}).deliver_due(T0)
    assert [(r.channel, r.ok, r.reason) for r in results] == [
        ("oncall", True, "delivered"), ("oncall", True, "delivered"), ("mail", True, "delivered")]
    assert store.outbox() == []
    [payload] = payloads(httpserver)
    assert payload["title"] == "[FIRING:2] NodeLivenessLost"
    assert payload["type"] == "failure"
    assert "Node 1 is UNAVAILABLE" in payload["message"]
    assert "Node 2 is UNAVAILABLE" in payload["message"]
    assert [m["Subject"] for m in mailbox.messages] == ["[FIRING:2] NodeLivenessLost"] * 2
    html = [part for message in mailbox.messages for part in html_parts(message)]
    assert any('<b>CRITICAL</b> NodeLivenessLost: Node 2 is UNAVAILABLE' in h for h in html)


async def test_a_zone_outage_is_one_page_on_every_kind_of_receiver(
        store: Store, httpserver: HTTPServer, mailbox: Mailbox, make_alert: MakeAlert) -> None:
    """Two nodes of zone b down, one of zone c: with `group_by: [cluster, zone]`, one page
    for zone b listing both nodes, in each channel's format and each receiver's payload."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    httpserver.expect_request("/", method="POST").respond_with_json({})  # ntfy
    httpserver.expect_request("/hooks/TOKEN", method="POST").respond_with_data("ok")  # mmost
    port = httpserver.port
    config = Config.model_validate({
        "clusters": [{"name": "prod", "urls": ["http://crdb-1:8080"]}],
        "channels": {"hook": {"urls": [json_url(httpserver)]},
                     "phone": {"urls": [f"ntfy://127.0.0.1:{port}/pages"], "format": "markdown"},
                     "chat": {"urls": [f"mmost://127.0.0.1:{port}/TOKEN"], "format": "markdown"},
                     "mail": {"urls": [mailbox.url()], "format": "html"}},
        "routes": [{"channels": ["hook", "phone", "chat", "mail"],
                    "group_by": ["cluster", "zone"]}],
    })
    store.record_nodes("prod", {n: NodeInfo(f"crdb-{n}:26257", {"region": "us-east1",
                                                                "zone": f"us-east1-{z}"})
                                for n, z in (("1", "b"), ("2", "b"), ("3", "c"))})
    zone_b = [make_alert(node_id="1"), make_alert(node_id="2")]
    zone_c = make_alert(node_id="3", zone="us-east1-c", fired_at=T0 - timedelta(minutes=1))
    renderer = Renderer(clusters={"prod": "http://crdb-1:8080"})
    Dispatcher(config, store, renderer).dispatch([*zone_b, zone_c], T0)
    results = await Deliverer(store, DELIVERY, {}).deliver_due(T0)
    assert len(results) == 8 and all(r.ok for r in results)

    def zone_b_page(title: str, body: str) -> bool:
        return title == "[FIRING:2] NodeLivenessLost" and "Node 1 is UNAVAILABLE" in body \
            and "Node 2 is UNAVAILABLE" in body and "Node 3" not in body

    hook = [p for p in payloads(httpserver, "/hook") if p["title"].startswith("[FIRING:2]")]
    assert [(p["version"], p["type"], zone_b_page(p["title"], p["message"])) for p in hook] == [
        ("1.0", "failure", True)]
    assert "locality: region=us-east1, zone=us-east1-b" in hook[0]["message"]
    phone = [p for p in payloads(httpserver, "/") if p["title"].startswith("[FIRING:2]")]
    assert [(p["topic"], zone_b_page(p["title"], p["message"])) for p in phone] == [
        ("pages", True)]
    assert "**CRITICAL** NodeLivenessLost: Node 1 is UNAVAILABLE" in phone[0]["message"]
    chat = [p["text"] for p in payloads(httpserver, "/hooks/TOKEN")]
    [chat_b] = [text for text in chat if text.startswith("[FIRING:2]")]
    title, _, body = chat_b.partition("\r\n")
    assert zone_b_page(title, body)
    assert "[DB Console](http://crdb-1:8080/#/node/2)" in body
    [mail_b] = [m for m in mailbox.messages if m["Subject"] == "[FIRING:2] NodeLivenessLost"]
    [html] = html_parts(mail_b)
    assert zone_b_page(mail_b["Subject"], html)
    assert '<a href="http://crdb-1:8080/#/node/1">DB Console</a>' in html
    assert "<br>locality: region=us-east1, zone=us-east1-b" in html
    assert sorted(m["Subject"] for m in mailbox.messages) == [
        "[FIRING:1] NodeLivenessLost", "[FIRING:2] NodeLivenessLost"]


async def test_receiver_down_keeps_the_entry_then_delivers_it_exactly_once(
        store: Store) -> None:
    port = free_port()
    queue(store, f"json://127.0.0.1:{port}/hook")
    deliverer = Deliverer(store, DELIVERY, {})
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
    deliverer = Deliverer(store, DELIVERY, {})
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
    [result] = await Deliverer(store, DELIVERY, {}).deliver_due(T0)
    assert result.ok
    assert time.perf_counter() - started < 2
    assert sorted(p["topic"] for p in payloads(httpserver)) == ["alerts", "pages"]


async def test_deliveries_run_concurrently_and_a_crash_loses_nothing(
        store: Store, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    queue(store, "wdslow://", "wdboom://", "wdslow://", json_url(httpserver),
          "nosuchscheme://user:s3cret@host/TOKEN")
    started = time.perf_counter()
    results = await Deliverer(store, DELIVERY, {}).deliver_due(T0)
    assert time.perf_counter() - started < 0.55
    assert [r.ok for r in results] == [True, False, True, True, False]
    assert results[4].url == "nosuchscheme://***"
    assert "cannot parse" in results[4].reason
    assert [e.url for e in store.outbox()] == ["wdboom://", "nosuchscheme://user:s3cret@host/TOKEN"]


async def test_overlapping_calls_never_send_an_entry_twice(store: Store) -> None:
    SLOW_CALLS.clear()
    queue(store, "wdslow://", title="once")
    deliverer = Deliverer(store, DELIVERY, {})
    first, second = await asyncio.gather(deliverer.deliver_due(T0), deliverer.deliver_due(T0))
    assert len(first) + len(second) == 1
    assert SLOW_CALLS == ["once"]


async def test_a_receiver_that_hangs_times_out(store: Store) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        queue(store, f"json://127.0.0.1:{silent.getsockname()[1]}/hook")
        deliverer = Deliverer(store, DeliveryConfig(timeout=timedelta(milliseconds=300)), {})
        [result] = await deliverer.deliver_due(T0)
    assert not result.ok
    assert "did not finish within" in result.reason
    assert result.elapsed < 1


async def test_failure_reason_survives_a_quiet_root_logger(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "level", logging.CRITICAL)
    monkeypatch.setattr(logging.getLogger("apprise"), "level", logging.NOTSET)
    queue(store, f"json://127.0.0.1:{free_port()}/hook")
    [result] = await Deliverer(store, DELIVERY, {}).deliver_due(T0)
    assert "Connection error" in result.reason


async def test_secrets_in_urls_never_reach_logs_or_results(
        store: Store, mailbox: Mailbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    queue(store, mailbox.url("user:s3cret@"), f"json://user:s3cret@127.0.0.1:{free_port()}/h",
          f"json://127.0.0.1:{free_port()}/h?+X-Token=s3cret", "slak://user:s3cret@T000/B000")
    results = await Deliverer(store, DELIVERY, {}).deliver_due(T0)
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


# The fallback channel --------------------------------------------------------------------


async def test_an_undeliverable_notification_also_goes_to_the_fallback_once(
        store: Store, mailbox: Mailbox) -> None:
    delivery = DELIVERY.model_copy(update={"retry_max": timedelta(minutes=1),
                                           "fallback": "mail",
                                           "fallback_after": timedelta(minutes=5)})
    mail = {"mail": ChannelConfig(urls=[SecretStr(mailbox.url())])}
    port = free_port()
    queue(store, f"json://127.0.0.1:{port}/hook")
    deliverer = Deliverer(store, delivery, mail)
    now = T0
    while now < T0 + delivery.fallback_after:
        assert await deliverer.deliver_due(now)
        now = store.outbox()[0].next_attempt_at
    assert now == T0 + delivery.fallback_after, "backoff alone would retry at T0+6m3s"
    assert mailbox.messages == []
    for _ in range(3):
        await deliverer.deliver_due(now)
        now = min(entry.next_attempt_at for entry in store.outbox())
    [message] = mailbox.messages
    assert message["Subject"] == "[UNDELIVERED] [FIRING:1] NodeLivenessLost"
    [text] = [part.get_payload(decode=True).decode() for part in message.walk()
              if part.get_content_type() == "text/plain"]
    assert text.startswith(f"Not delivered to channel oncall (json://127.0.0.1:{port}/hook) "
                           "for 5m: ")
    assert "Node 1 is DEAD" in text
    [original] = store.outbox()
    assert (original.channel, original.escalated, original.attempts) == ("oncall", True, 12)


# `crdb-watchdog notify-test` -------------------------------------------------------------


def test_notify_test_command_reports_each_url_and_exits_by_the_outcome(
        tmp_path: Path, httpserver: HTTPServer, capsys: pytest.CaptureFixture[str]) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    down = f"json://user:s3cret@127.0.0.1:{free_port()}/down"
    config = tmp_path / "watchdog.yaml"
    config.write_text(f"""\
clusters: [{{name: prod, urls: ["http://127.0.0.1:9"]}}]
channels:
  chat: {{urls: ["{json_url(httpserver)}", "{down}"], format: markdown}}
  hook: {{urls: ["{json_url(httpserver)}"]}}
routes: [{{channels: [chat]}}]
state: {tmp_path / "state.db"}
""")
    assert main(["notify-test", "-c", str(config), "--channel", "chat"]) == 1
    delivered, failed = capsys.readouterr().out.splitlines()
    assert delivered.startswith(f"{json_url(httpserver)}  delivered (")
    assert failed.startswith(f"json://user:****@127.0.0.1:{down.rsplit(':', 1)[1].split('/')[0]}"
                             "/down  FAILED: ")
    [payload] = payloads(httpserver)
    assert payload["title"] == "[TEST] [FIRING:1] NodeLivenessLost"
    assert "**CRITICAL** NodeLivenessLost" in payload["message"]
    assert main(["notify-test", "-c", str(config), "--channel", "hook"]) == 0
    assert main(["notify-test", "-c", str(config), "--channel", "pager"]) == 2
    assert capsys.readouterr().err.endswith("no channel 'pager'; channels: chat, hook\n")


def test_the_fallback_must_be_a_configured_channel() -> None:
    with pytest.raises(ValueError, match=r"delivery\.fallback names an unknown channel 'mail'"):
        Config.model_validate({
            "clusters": [{"name": "prod", "urls": ["http://crdb-1:8080"]}],
            "channels": {"oncall": {"urls": ["json://127.0.0.1:9/hook"]}},
            "routes": [{"channels": ["oncall"]}],
            "delivery": {"fallback": "mail"}})
