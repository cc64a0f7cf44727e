"""Log lines for journald, for a terminal and as JSON; secrets never in any of them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_config import VALID, write
from watchdog.config import load_config
from watchdog.logs import config_secrets, configure_logging, redact

log = logging.getLogger("watchdog.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    redact([])
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_under_journald_a_priority_prefix_and_no_timestamp(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    configure_logging("info")
    log.warning("polling failed")
    log.info("works again")
    assert lines(capsys) == ["<4>watchdog.test: polling failed", "<6>watchdog.test: works again"]


def test_json_lines_keep_the_priority_prefix_under_journald(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    configure_logging("info", "json")
    log.error("cannot write")
    [line] = lines(capsys)
    assert line.startswith("<3>{")
    entry = json.loads(line[3:])
    assert entry["level"] == "error" and entry["message"] == "cannot write"
    assert entry["logger"] == "watchdog.test" and entry["time"].endswith("+00:00")


def test_in_a_terminal_text_with_timestamps(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    configure_logging("info")
    log.info("hello")
    [line] = lines(capsys)
    assert line.endswith(" INFO watchdog.test: hello") and line[:4].isdigit()


def test_config_secrets_are_scrubbed_from_messages_and_tracebacks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    text = VALID.replace('"json://127.0.0.1:9/hook"',
                         '"json://127.0.0.1:9/hook", "slack://T1JJ3T3L2/A1BRTD4JD/'
                         'TIiajkdnlazkcOXrIdevi7FQ/#ops"')
    text += "heartbeat: {url: https://hc-ping.com/5b5c6e70-4f4d-4c3c-9d2b-0a1b2c3d4e5f}\n"
    config = load_config(write(tmp_path, text))
    configure_logging("info", "json")
    redact(config_secrets(config))
    try:
        raise ValueError("login as root with s3cret refused")
    except ValueError:
        log.exception("to json://127.0.0.1:9/hook; pinging "
                      "https://hc-ping.com/5b5c6e70-4f4d-4c3c-9d2b-0a1b2c3d4e5f; "
                      "token TIiajkdnlazkcOXrIdevi7FQ")
    [line] = [json.loads(line) for line in lines(capsys)]
    message = line["message"]
    for secret in ("s3cret", "hook", "5b5c6e70", "TIiajkdnlazkcOXrIdevi7FQ"):
        assert secret not in message
    assert "to json://***; pinging https://***; token ***" in message
    assert "login as root with *** refused" in message


def test_check_names_an_unusable_channel_url_by_its_scheme_only(tmp_path: Path) -> None:
    config = write(tmp_path, VALID.replace('"json://127.0.0.1:9/hook"',
                                           '"nosuchscheme://tok-91c2e7/secret-path"'))
    result = subprocess.run([sys.executable, "-m", "watchdog", "check", "-c", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "channels.oncall: URL 1 (nosuchscheme://…) is not one Apprise can use" in result.stderr
    assert "tok-91c2e7" not in result.stdout + result.stderr
