"""The sd_notify protocol, written out because the library for it blocks and drops Unicode.

Sends are non-blocking: a service manager that stops reading must never stall the watchdog.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address = ("\0" + address[1:] if address and address.startswith("@")
                         else address)
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields: str) -> bool:
        """`send(READY="1", STATUS="…")`; False when not under systemd or the send failed."""
        if self._socket is None or self._address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()


def watchdog_interval() -> float | None:
    """Half of `WATCHDOG_USEC` in seconds (systemd's advice), when a watchdog is asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def monotonic_usec() -> str:
    """CLOCK_MONOTONIC in µs: systemd 253+ wants it with RELOADING=1 to order the reload."""
    return str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
