"""systemd's readiness protocol (sd_notify) with the standard library only.

Under ``Type=notify`` systemd passes a datagram socket in ``NOTIFY_SOCKET``; the daemon reports
READY once it publishes, WATCHDOG while its loop is alive, and STOPPING on the way out. Outside
systemd every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

_LOGGER = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to the service manager, if there is one."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        """Reads ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` from ``environ`` (default: os.environ)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # A leading "@" names a socket in Linux's abstract namespace.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_seconds = 0.0
        """Seconds between WATCHDOG pings systemd expects at least; 0 when it expects none."""
        watchdog_pid = env.get("WATCHDOG_PID", "")
        if env.get("WATCHDOG_USEC", "").isdigit() and watchdog_pid in ("", str(os.getpid())):
            self.watchdog_seconds = int(env["WATCHDOG_USEC"]) / 1e6
        self._socket: socket.socket | None = None
        if self.address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *lines: str) -> bool:
        """Sends ``lines`` (``"READY=1"``, ...) in one datagram; False if nothing was sent."""
        if self._socket is None:
            return False
        try:
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as error:
            # Losing the supervisor's socket must not take the daemon down.
            _LOGGER.debug("sd_notify to %r failed: %s", self.address, error)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
