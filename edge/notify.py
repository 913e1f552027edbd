"""systemd notification protocol (sd_notify) over the NOTIFY_SOCKET datagram socket.

Written here rather than taken from a library: it is one datagram per message, and owning it
lets the daemon treat a vanished socket as harmless.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING; a no-op when not started by systemd."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = self._parse_address(env.get("NOTIFY_SOCKET", ""))
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        # Ping at half the period, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval: float | None = int(usec) / 2e6 if enabled else None
        self._last_ping: float | None = None
        self._sock: socket.socket | None = None
        if self._address is not None:
            # Non-blocking: a manager that stops reading must never stall the capture loop.
            self._sock = socket.socket(
                socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            )

    @staticmethod
    def _parse_address(value: str) -> str | None:
        if not value:
            return None
        if value.startswith("@"):
            return "\0" + value[1:]  # abstract namespace socket
        if value.startswith("/"):
            return value
        log.warning("ignoring NOTIFY_SOCKET that is neither a path nor an abstract name")
        return None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> None:
        if self._sock is None or self._address is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode("utf-8"), self._address)
        except BlockingIOError:
            log.debug("sd_notify dropped: the manager is not reading its socket")
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc.strerror)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        """Ping if the watchdog is on and half its period has passed since the last ping."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if self._last_ping is None or now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
