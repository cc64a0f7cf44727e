"""The sd_notify sender on real datagram sockets, and the unit file checked by systemd-analyze
(offline: PID 1 need not be systemd)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchdog.systemd import Notifier, watchdog_interval

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "crdb-watchdog.service"
INSTALLED = "/opt/crdb-watchdog/bin/crdb-watchdog"
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


@pytest.fixture
def receiver() -> Iterator[tuple[socket.socket, str]]:
    """A path socket in a short folder (AF_UNIX paths are limited to 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sd", dir="/tmp") as folder:
        path = f"{folder}/notify"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(2)
        yield sock, path
        sock.close()


def test_sends_unicode_status_to_a_path_socket(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier(path)
    assert notifier.send(READY="1", STATUS="2 cluster(s) ✓")
    assert sock.recv(4096).decode() == "READY=1\nSTATUS=2 cluster(s) ✓"
    notifier.close()


def test_sends_to_an_abstract_socket() -> None:
    name = f"crdb-watchdog-test-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        notifier = Notifier("@" + name)
        assert notifier.send(WATCHDOG="1")
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()


def test_a_reader_that_stopped_never_blocks_the_sender(
        receiver: tuple[socket.socket, str]) -> None:
    notifier = Notifier(receiver[1])
    started = time.monotonic()
    sent = [notifier.send(WATCHDOG="1") for _ in range(2000)]
    assert time.monotonic() - started < 1.0
    assert sent[0] and not sent[-1]  # the queue filled up: messages dropped, never waited on
    notifier.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled and not notifier.send(READY="1")


def test_keepalive_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None


@needs_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """verify wants ExecStart's binary to exist: point it at this checkout's."""
    unit = tmp_path / UNIT.name
    command = shutil.which("crdb-watchdog") or str(Path(sys.executable).with_name("crdb-watchdog"))
    unit.write_text(UNIT.read_text().replace(INSTALLED, command))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(unit) not in result.stderr, result.stderr  # no warning about the unit itself


@needs_analyze
def test_unit_exposure_is_at_most_2_0() -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                             "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert exposure is not None and float(exposure.group(1)) <= 2.0


def test_example_config_is_valid_with_its_credentials(tmp_path: Path) -> None:
    """What the README's install steps produce passes `check`."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "crdb-password").write_text("pw\n")
    (credentials / "oncall-urls").write_text("# paging\njson://127.0.0.1:9/oncall\n")
    (credentials / "chat-urls").write_text("json://127.0.0.1:9/chat\n")
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "systemd" / "config.example.yaml").read_text()
                      .replace("ca_cert: /etc/crdb-watchdog/ca.crt", "tls_verify: true"))
    result = subprocess.run([sys.executable, "-m", "watchdog", "check", "-c", str(config)],
                            capture_output=True, text=True, timeout=60,
                            env={"CREDENTIALS_DIRECTORY": str(credentials), "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    assert "1 cluster(s)" in result.stdout and "2 channel(s)" in result.stdout
