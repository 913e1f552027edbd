"""ByteTransport over a serial port (USB-UART adapter, on-board UART, or a pty)."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time

import serial

from firmware_bridge.errors import SensorDisconnectedError, SensorOpenError, SensorTimeoutError


class SerialTransport:
    """A serial port opened 8N1 without flow control, locked against other processes.

    pyserial opens, configures and locks the port; reads and writes go straight to the
    non-blocking descriptor through select(), so every call honours its own deadline without
    reconfiguring the port's timeouts each time.
    """

    def __init__(self, port: str, baudrate: int) -> None:
        try:
            self._serial = serial.Serial(
                port=port,
                baudrate=baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=0,
                write_timeout=0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SensorOpenError(f"cannot open serial port {port}: {exc}") from exc
        self._port = port
        self._fd: int = self._serial.fileno()

    @property
    def description(self) -> str:
        return self._port

    def write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            if not self._ready(writable=True, deadline=deadline):
                raise SensorTimeoutError(f"{self._port}: timed out writing {len(data)} bytes")
            try:
                sent = os.write(self._fd, view)
            except BlockingIOError:
                continue  # the buffer filled between select() and write(): wait again
            except OSError as exc:
                raise self._gone(exc) from exc
            view = view[sent:]

    def read(self, max_bytes: int, deadline: float) -> bytes:
        while True:
            if not self._ready(writable=False, deadline=deadline):
                return b""
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                continue  # another reader took the bytes select() announced
            except OSError as exc:
                raise self._gone(exc) from exc
            if not data:
                # A vanished tty reads as end-of-file right after select() reports it readable.
                raise self._gone(OSError(errno.EIO, "end of file"))
            return data

    def discard_input(self) -> None:
        try:
            self._serial.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise self._gone(exc) from exc

    def close(self) -> None:
        # A device that is already gone leaves nothing to release; pyserial's close() ignores a
        # port that is already closed.
        with contextlib.suppress(serial.SerialException, OSError):
            self._serial.close()

    def _ready(self, *, writable: bool, deadline: float) -> bool:
        if not self._serial.is_open:
            raise SensorDisconnectedError(f"{self._port}: port is closed")
        remaining = max(0.0, deadline - time.monotonic())
        fds = [self._fd]
        try:
            if writable:
                ready = select.select([], fds, [], remaining)[1]
            else:
                ready = select.select(fds, [], [], remaining)[0]
        except (OSError, ValueError) as exc:
            raise self._gone(exc) from exc
        return bool(ready)

    def _gone(self, exc: BaseException) -> SensorDisconnectedError:
        return SensorDisconnectedError(f"{self._port}: device disconnected ({exc})")
