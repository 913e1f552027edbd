"""Serve a simulated ZFM device on a pseudo-terminal, reachable through a stable symlink."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from hil.simulator.device import ZfmDevice
from hil.simulator.faults import Fault

log = logging.getLogger(__name__)

_READ_CHUNK = 4096
_BITS_PER_BYTE = 10
# A throttled device sends this much wire time per write, so it stays responsive to stop().
_THROTTLE_SLICE = 0.01


@dataclass(frozen=True)
class ScannerState:
    """A snapshot of what the simulated scanner has seen and done, for tests to wait on."""

    commands: Mapping[int, int]  # command code -> times received
    uploads: int  # image uploads answered
    rejected_packets: int  # garbled or unexpected packets from the host
    placed: int  # fingers put on the glass
    lifts_seen: int  # lifts the host has observed
    plugged: bool
    plug_count: int  # 1 after start, +1 per replug
    bytes_sent: int  # bytes handed to the pty

    def seen(self, command: int) -> int:
        return self.commands.get(command, 0)


class PtyScanner:
    """A thread serving ``device`` on a pty; ``link`` (if given) is a symlink to its slave end.

    Clients open :attr:`path` as they would /dev/ttyUSB0. Use as a context manager, or call
    :meth:`start` and :meth:`stop`. An exception inside the serving thread is re-raised by
    :meth:`stop`.
    """

    def __init__(self, device: ZfmDevice, link: Path | None = None) -> None:
        self.device = device
        self._link = link
        self._cond = threading.Condition()
        self._controls: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue()
        )
        self._wake_r, self._wake_w = -1, -1
        self._master = -1
        self._slave = -1
        self._slave_path = ""
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._error: BaseException | None = None
        self._bytes_per_second: float | None = None
        self._bytes_sent = 0
        self._plug_count = 0
        self._state = self._snapshot()

    @property
    def path(self) -> str:
        """What a client opens: the symlink if there is one, else the current /dev/pts/N."""
        return str(self._link) if self._link is not None else self._slave_path

    @property
    def slave_path(self) -> str:
        return self._slave_path

    @property
    def state(self) -> ScannerState:
        with self._cond:
            return self._state

    def start(self) -> PtyScanner:
        if self._thread is not None:
            raise RuntimeError("scanner already started")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._plug()
        self._thread = threading.Thread(target=self._serve, name="pty-scanner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        os.write(self._wake_w, b"x")
        thread.join()
        self._unplug()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        if self._error is not None:
            raise RuntimeError("simulated scanner failed") from self._error

    def __enter__(self) -> PtyScanner:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_until(self, predicate: Callable[[ScannerState], bool], timeout: float) -> bool:
        """Block until ``predicate(state)`` holds; False after ``timeout`` s or a server crash."""
        with self._cond:
            return (
                self._cond.wait_for(
                    lambda: self._error is not None or predicate(self._state), timeout
                )
                and self._error is None
            )

    def throttle(self, baudrate: int | None) -> None:
        """Send no faster than a UART at ``baudrate`` (8N1); None: as fast as the pty takes it."""
        rate = _byte_rate(baudrate)
        self._control(lambda: setattr(self, "_bytes_per_second", rate))

    def unplug(self) -> None:
        """Pull the cable: the pty goes away and so does the symlink."""
        self._control(self._unplug)

    def replug(self) -> None:
        """Plug back in: a new pty behind the same symlink, and a freshly powered device."""
        self._control(self._replug)

    def add_fault(self, fault: Fault) -> None:
        """Stage a misbehaviour of the device (see :mod:`hil.simulator.faults`)."""
        self.device.faults.add(fault)

    def _control(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the serving thread, which owns the descriptors, and wait for it."""
        if self._thread is None:
            raise RuntimeError("scanner is not running")
        done = threading.Event()
        self._controls.put((action, done))
        os.write(self._wake_w, b"x")
        while not done.wait(0.5):
            if not self._thread.is_alive():
                raise RuntimeError("simulated scanner stopped") from self._error

    def _serve(self) -> None:
        pending = bytearray()
        next_send = 0.0
        try:
            while not self._stopping:
                now = time.monotonic()
                plugged = self._master >= 0
                sendable = plugged and bool(pending) and now >= next_send
                wait = None if sendable or not pending or not plugged else next_send - now
                readable, writable, _ = select.select(
                    [self._wake_r, *([self._master] if plugged else [])],
                    [self._master] if sendable else [],
                    [],
                    wait,
                )
                if self._wake_r in readable:
                    self._run_controls()
                    if self._master < 0:
                        pending.clear()
                    continue
                if self._master in readable:
                    pending += self._receive()
                if self._master in writable:
                    sent = self._send(pending)
                    del pending[:sent]
                    if self._bytes_per_second is not None:
                        next_send = time.monotonic() + sent / self._bytes_per_second
        except BaseException as exc:
            log.exception("simulated scanner failed")
            self._error = exc
        finally:
            with self._cond:
                self._cond.notify_all()

    def _run_controls(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, _READ_CHUNK)
        while True:
            try:
                action, done = self._controls.get_nowait()
            except queue.Empty:
                return
            try:
                action()
            finally:
                done.set()
                self._publish()

    def _receive(self) -> bytes:
        try:
            data = os.read(self._master, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return b""
        reply = self.device.receive(data)
        self._publish()
        return reply

    def _send(self, pending: bytearray) -> int:
        size = len(pending)
        if self._bytes_per_second is not None:
            size = max(1, min(size, int(self._bytes_per_second * _THROTTLE_SLICE)))
        try:
            sent = os.write(self._master, pending[:size])
        except BlockingIOError:
            return 0
        with self._cond:
            self._bytes_sent += sent
        self._publish()
        return sent

    def _publish(self) -> None:
        with self._cond:
            self._state = self._snapshot()
            self._cond.notify_all()

    def _snapshot(self) -> ScannerState:
        return ScannerState(
            commands=Counter(self.device.commands),
            uploads=self.device.uploads,
            rejected_packets=self.device.rejected_packets,
            placed=self.device.script.placed,
            lifts_seen=self.device.script.lifts_seen,
            plugged=self._master >= 0,
            plug_count=self._plug_count,
            bytes_sent=self._bytes_sent,
        )

    def _plug(self) -> None:
        master, slave = os.openpty()
        # Raw before any client opens it, so nothing is echoed or line-edited in between.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._slave_path = os.ttyname(slave)
        if self._link is not None:
            # Build the new link beside the old one and rename over it: never a moment without.
            staging = self._link.with_name(f".{self._link.name}.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()
            staging.symlink_to(self._slave_path)
            staging.replace(self._link)
        self._plug_count += 1

    def _unplug(self) -> None:
        if self._master < 0:
            return
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                if self._link.is_symlink() and os.readlink(self._link) == self._slave_path:
                    self._link.unlink()
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1

    def _replug(self) -> None:
        self._unplug()
        self.device.power_cycle()
        self._plug()


def _byte_rate(baudrate: int | None) -> float | None:
    if baudrate is None:
        return None
    if baudrate <= 0:
        raise ValueError("baudrate must be positive")
    return baudrate / _BITS_PER_BYTE
