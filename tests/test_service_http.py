"""The status server on its own: routes, the bearer token, malformed requests; and the config
rule that only loopback may go without a token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.test_config import VALID, problems, write
from watchdog.config import load_config
from watchdog.http import Response, Route, StatusServer, text

TOKEN = "tok-3b9d1f0e5a7c"


def boom() -> Response:
    raise RuntimeError("a route's bug")


ROUTES: dict[str, Route] = {"/metrics": lambda: Response(200, b"up 1\n"),
                            "/healthz": lambda: text(200, "ok"), "/boom": boom}


async def exchange(server: StatusServer, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def get(server: StatusServer, path: str, token: str | None = None) -> tuple[int, bytes]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return await exchange(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())


@pytest.fixture
async def server() -> AsyncIterator[StatusServer]:
    server = StatusServer("127.0.0.1", 0, ROUTES)
    await server.start()
    yield server
    await server.close()


async def test_routes_answer_and_unknown_paths_do_not(server: StatusServer) -> None:
    assert await get(server, "/metrics") == (200, b"up 1\n")
    assert (await get(server, "/metrics?x=1"))[0] == 200
    assert (await get(server, "/nope"))[0] == 404
    assert (await exchange(server, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
    assert await exchange(server, b"HEAD /metrics HTTP/1.1\r\n\r\n") == (200, b"")
    assert (await get(server, "/boom"))[0] == 500


async def test_malformed_or_oversized_requests_get_400(server: StatusServer) -> None:
    assert (await exchange(server, b"hello\r\n\r\n"))[0] == 400
    assert (await exchange(server, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n"))[0] == 400


async def test_with_a_token_every_route_but_healthz_needs_it(server: StatusServer) -> None:
    server.token = TOKEN
    assert (await get(server, "/metrics"))[0] == 401
    assert (await get(server, "/metrics", "wrong"))[0] == 401
    assert (await get(server, "/metrics", TOKEN))[0] == 200
    assert (await get(server, "/healthz"))[0] == 200


def test_listening_beyond_loopback_requires_a_token(tmp_path: Path) -> None:
    found = problems(write(tmp_path, VALID + 'http: {listen: "0.0.0.0:9184"}\n'))
    assert any("needs `token` or `token_file`" in problem for problem in found)
    assert load_config(write(tmp_path, VALID + 'http: {listen: "[::1]:9184"}\n')).http.loopback


def test_token_and_channel_urls_come_from_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "http-token").write_text(TOKEN + "\n")
    (credentials / "oncall-urls").write_text("json://127.0.0.1:9/a\n\n# b\njson://127.0.0.1:9/b\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    text_ = VALID.replace('oncall: {urls: ["json://127.0.0.1:9/hook"]}',
                          "oncall: {urls_file: oncall-urls}")
    config = load_config(write(tmp_path, text_ + 'http: {listen: "0.0.0.0:9184", '
                                                  "token_file: http-token}\n"))
    assert config.http.token is not None and config.http.token.get_secret_value() == TOKEN
    assert [u.get_secret_value() for u in config.channels["oncall"].urls] == [
        "json://127.0.0.1:9/a", "json://127.0.0.1:9/b"]


def test_a_missing_or_empty_urls_file_is_a_located_problem(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    base = VALID.replace('oncall: {urls: ["json://127.0.0.1:9/hook"]}',
                         "oncall: {urls_file: %s}")
    assert problems(write(tmp_path, base % empty)) == [
        f"{tmp_path / 'watchdog.yaml'}:7: urls_file holds no URL"]
    assert "cannot read urls_file" in problems(write(tmp_path, base % (tmp_path / "no")))[0]
