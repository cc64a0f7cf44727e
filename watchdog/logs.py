"""Log output that fits where it goes: journald, a terminal, or a JSON log pipeline.

Under systemd (`$JOURNAL_STREAM` set) journald stamps each line itself, so lines carry no
timestamp, only a `<N>` syslog priority prefix that journald turns into the entry's severity.
JSON lines carry that prefix too under journald, so their severity is kept as well. Every
line is scrubbed of the configured secrets as a last line of defence: the code never logs a
password, token or channel URL, and this catches what a library might.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from watchdog.config import Config

LogFormat = Literal["auto", "text", "json"]

_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                    logging.CRITICAL: 2}
# A shorter "secret" would scrub ordinary words out of every line.
_MIN_SECRET = 4
_MIN_TOKEN = 16
# Schemes whose host is an address; in others (`slack://`, `tgram://`) it is often a token.
_ADDRESS_SCHEMES = frozenset({"http", "https", "json", "jsons", "form", "forms", "xml", "xmls"})
REDACTED = "***"


class _Formatter(logging.Formatter):
    """One of the three layouts, with secrets scrubbed from the message and traceback."""

    def __init__(self, layout: Literal["journal", "text", "json"], journal: bool) -> None:
        super().__init__()
        self.layout = layout
        self.journal = journal
        self.secrets: dict[str, str] = {}
        """Each secret and what stands in its place."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        for secret, mask in self.secrets.items():
            message = message.replace(secret, mask)
        if self.layout == "json":
            text = json.dumps({"time": _iso(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "message": message}, ensure_ascii=False)
        elif self.layout == "journal":
            text = f"{record.name}: {message}"
        else:
            text = f"{self.formatTime(record)} {record.levelname} {record.name}: {message}"
        if self.journal:
            text = f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{text}"
        return text


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


_formatter = _Formatter("text", journal=False)


def configure_logging(level: str, fmt: LogFormat = "auto") -> None:
    """Root logging to stderr; chatty libraries only from WARNING (APScheduler: ERROR, since
    the service counts skipped polls itself instead of a warning every interval)."""
    global _formatter
    journal = bool(os.environ.get("JOURNAL_STREAM"))
    layout: Literal["journal", "text", "json"] = (
        "json" if fmt == "json" else "journal" if fmt == "auto" and journal else "text")
    secrets, _formatter = _formatter.secrets, _Formatter(layout, journal)
    _formatter.secrets = secrets
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apprise").setLevel(logging.WARNING)


def redact(secrets: Iterable[str]) -> None:
    """From now on, replace each of these strings in every log line: a URL by its scheme and
    `***` (the channel name beside it still says which one), anything else by `***`."""
    unique = sorted({secret for secret in secrets if len(secret) >= _MIN_SECRET},
                    key=len, reverse=True)
    _formatter.secrets = {secret: _mask(secret) for secret in unique}


def _mask(secret: str) -> str:
    scheme, separator, _ = secret.partition("://")
    return f"{scheme}://{REDACTED}" if separator and scheme.isalnum() else REDACTED


def config_secrets(config: Config) -> list[str]:
    """Every secret a config holds: passwords, channel URLs (and their credentials), the
    status server's token, the heartbeat URL."""
    secrets = []
    for cluster in config.clusters:
        password = cluster.read_password()
        if password is not None:
            secrets.append(password.get_secret_value())
    for channel in config.channels.values():
        for url in channel.urls:
            secrets += _url_secrets(url.get_secret_value())
    if config.http.token is not None:
        secrets.append(config.http.token.get_secret_value())
    if config.heartbeat.url is not None:
        secrets += _url_secrets(config.heartbeat.url.get_secret_value())
    return secrets


def _url_secrets(url: str) -> list[str]:
    """The URL whole, its password and query, and the parts of it long enough to be tokens
    (a healthchecks UUID, a Slack token as the host of `slack://`), not words like `hook`."""
    parts = urlsplit(url)
    pieces = [url, parts.password or "", parts.query]
    candidates = parts.path.split("/")
    if parts.scheme not in _ADDRESS_SCHEMES:
        candidates.append(parts.netloc.rpartition("@")[2])
    pieces += [piece for piece in candidates if len(piece) >= _MIN_TOKEN and ":" not in piece]
    return pieces
