"""The status server: a tiny HTTP/1.1 server on the service's own event loop.

`asyncio.start_server` and a few dozen lines instead of a web framework: the routes are four
GETs answered from memory, and a framework would cost more resident memory than the whole
pipeline. One request per connection (`Connection: close`), a bounded request head, a time
limit per request, GET and HEAD only. When a token is set, every route but `/healthz`
requires `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 5.0
MAX_HEAD = 8192
OPEN_ROUTES = frozenset({"/healthz"})


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[], Response]


def text(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode())


class StatusServer:
    def __init__(self, host: str, port: int, routes: Mapping[str, Route],
                 token: str | None = None) -> None:
        self.host = host
        self.port = port
        self.routes = routes
        self.token = token
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; OSError if the address cannot be had. `port` becomes the bound port."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                method, path, headers = await _read_head(reader)
                response = self._answer(method, path, headers)
                writer.write(_encode(response, head_only=method == "HEAD"))
                await writer.drain()
        except (ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            writer.write(_encode(text(400, "bad request")))
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, method: str, path: str, headers: Mapping[str, str]) -> Response:
        route = self.routes.get(path.split("?", 1)[0])
        if route is None:
            return text(404, "not found; try /metrics, /healthz, /api/alerts, /api/silences")
        if method not in ("GET", "HEAD"):
            return text(405, "only GET")
        if path not in OPEN_ROUTES and not self._authorized(headers):
            return text(401, "a bearer token is required")
        try:
            return route()
        except Exception:
            log.exception("status server: %s failed", path)
            return text(500, "internal error; see the service's log")

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        if self.token is None:
            return True
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self.token.encode())


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, version = lines[0].split(" ")
    if not version.startswith("HTTP/1.") or not path.startswith("/"):
        raise ValueError("not an HTTP/1 request")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


def _encode(response: Response, *, head_only: bool = False) -> bytes:
    reason = HTTPStatus(response.status).phrase
    head = [f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Connection: close",
            "Cache-Control: no-store"]
    if response.status == 401:
        head.append('WWW-Authenticate: Bearer realm="crdb-watchdog"')
    data = ("\r\n".join(head) + "\r\n\r\n").encode()
    return data if head_only else data + response.body
