"""A real Mosquitto broker on loopback, for tests, the demo and hardware-in-the-loop runs.

Each broker gets its own directory (config, log, persistence) and a free port on 127.0.0.1.
Persistence is saved after every change (within one broker loop turn, see
:meth:`MosquittoBroker.persistence_file_id`), so :meth:`MosquittoBroker.kill` (SIGKILL) and
:meth:`MosquittoBroker.restart` behave like a real broker crash and recovery.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

_FALLBACK_PATHS = (Path("/usr/sbin/mosquitto"), Path("/usr/local/sbin/mosquitto"))
_PORT_ATTEMPTS = 5


class BrokerError(Exception):
    """Mosquitto could not be started or stopped; the message carries the end of its log."""


def find_mosquitto() -> Path | None:
    """The mosquitto executable on PATH or in the usual sbin directories, or None."""
    found = shutil.which("mosquitto")
    if found:
        return Path(found)
    for candidate in _FALLBACK_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class MosquittoBroker:
    """Context manager running ``mosquitto -c <generated config>``.

    ``extra_config`` lines are appended to the generated configuration (e.g. ``acl_file ...``).
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        host: str = "127.0.0.1",
        extra_config: Sequence[str] = (),
        executable: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        found = executable or find_mosquitto()
        if found is None:
            raise BrokerError("mosquitto not found on PATH or in /usr/sbin")
        self.executable = found
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="mosquitto-")
            directory = Path(self._tempdir.name)
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.host = host
        self.port = 0
        self.extra_config = tuple(extra_config)
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def persistence_file_id(self) -> tuple[int, int] | None:
        """Identity (inode, mtime) of the persistence file; it changes with every save.

        Mosquitto saves on its next loop turn after a change, not before acknowledging it,
        writing a new file and renaming it into place: a crash test waits for this to change
        before killing the broker.
        """
        try:
            info = (self.directory / "mosquitto.db").stat()
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns

    def start(self) -> None:
        """Start on a fresh free port (retrying if another process grabs it first)."""
        if self.running:
            raise BrokerError("already running")
        for attempt in range(_PORT_ATTEMPTS):
            self.port = _free_port(self.host)
            try:
                self._launch()
                return
            except BrokerError:
                if "Address already in use" not in self.log_text() or attempt + 1 == _PORT_ATTEMPTS:
                    raise

    def restart(self) -> None:
        """Stop (if running) and start again on the same port, keeping the persisted state."""
        if self.running:
            self.stop()
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._launch()
                return
            except BrokerError:
                # A killed broker's port can be briefly held by the kernel; try until the deadline.
                if "Address already in use" not in self.log_text() or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait; Mosquitto saves its persistence file on the way out."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        self._process = None

    def close(self) -> None:
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.directory}/",
            # Save after every change: a SIGKILL then loses nothing the broker acknowledged.
            "autosave_interval 1",
            "autosave_on_changes true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            # Mosquitto 2.x otherwise drops to the 'mosquitto' user and cannot use our directory.
            lines.append("user root")
        lines.extend(self.extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")

    def _launch(self) -> None:
        self._write_config()
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(self.executable), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise BrokerError(f"mosquitto exited with {code}:\n{self._log_tail()}")
            # The log line proves the listener is ours, not another process on a reused port.
            if self._opened_listener(log_start) and self._accepts():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(
                    f"mosquitto not accepting on {self.host}:{self.port} after "
                    f"{self.start_timeout} s:\n{self._log_tail()}"
                )
            time.sleep(0.02)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _opened_listener(self, log_start: int) -> bool:
        with self.log_path.open("rb") as log:
            log.seek(log_start)
            text = log.read().decode(errors="replace")
        return f"listen socket on port {self.port}." in text

    def _log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
