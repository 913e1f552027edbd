"""The simulated sensor's USB side: URBs in, ZFM bytes through a ``ZfmDevice``, URBs back.

Pure state, no umockdev: :mod:`hil.usb.handler` feeds it the usbdevfs requests libusb makes.
Bulk OUT transfers are handed to the device as they arrive; its replies queue up and fill bulk
IN transfers (each completes with whatever is queued, up to its length, as a real device ends
a transfer with a short packet). Control transfers on endpoint 0 answer GET_DESCRIPTOR.
"""

from __future__ import annotations

import errno
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hil.simulator.device import ZfmDevice
from hil.simulator.pty_scanner import ScannerState
from hil.usb.descriptors import IN_ENDPOINT, OUT_ENDPOINT, UsbIdentity
from hil.usb.usbdevfs import URB_TYPE_BULK, URB_TYPE_CONTROL, Urb

_SETUP = struct.Struct("<BBHHH")
_GET_DESCRIPTOR = 6
_DESCRIPTOR_DEVICE, _DESCRIPTOR_CONFIGURATION, _DESCRIPTOR_STRING = 1, 2, 3
# A throttled device releases its replies in slices this long, like packets on a slow bus.
_THROTTLE_SLICE = 0.01

Handle = TypeVar("Handle")


@dataclass
class Transfer(Generic[Handle]):
    """A submitted URB: its decoded fields and the caller's handle for writing it back."""

    urb: Urb
    handle: Handle
    data: bytes = b""  # what an IN transfer returns (or a control transfer's data stage)


@dataclass
class _Queued:
    ready_at: float
    data: bytearray


@dataclass
class UsbLink(Generic[Handle]):
    """The device behind the USB cable, and what the host has in flight with it.

    Thread-safe: the ioctl handler runs on umockdev's worker thread while a test changes
    faults, plugs and unplugs from its own.
    """

    device: ZfmDevice
    identity: UsbIdentity
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _pending_in: deque[Transfer[Handle]] = field(default_factory=deque)
    _completed: deque[Transfer[Handle]] = field(default_factory=deque)
    _queued: deque[_Queued] = field(default_factory=deque)
    _bytes_per_second: float | None = None
    _halted: set[int] = field(default_factory=set)
    _stall_in: int = 0
    _io_errors_in: int = 0
    _connected: bool = False
    _generation: int = 0
    listener: Callable[[ScannerState], None] | None = None
    _plug_count: int = 0
    _bytes_sent: int = 0
    _state: ScannerState | None = None

    def __post_init__(self) -> None:
        with self._lock:
            self._publish()

    # --- what a test does to the device ------------------------------------------------------

    def connect(self) -> int:
        """Cable in: a freshly powered device with nothing in flight; returns its generation.

        Requests made through an older generation (a device node from before a replug) fail
        with ENODEV, as on a stale usbfs file descriptor.
        """
        with self._lock:
            self.device.power_cycle()
            self._pending_in.clear()
            self._completed.clear()
            self._queued.clear()
            self._halted.clear()
            self._connected = True
            self._plug_count += 1
            self._generation += 1
            self._publish()
            return self._generation

    def disconnect(self) -> None:
        """Cable out: transfers in flight end with ESHUTDOWN, everything after with ENODEV."""
        with self._lock:
            if not self._connected:
                return
            self._connected = False
            while self._pending_in:
                transfer = self._pending_in.popleft()
                transfer.urb.status = -errno.ESHUTDOWN
                self._completed.append(transfer)
            self._queued.clear()
            self._publish()

    def throttle(self, bytes_per_second: float | None) -> None:
        """Release replies no faster than this (None: at once)."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        with self._lock:
            self._bytes_per_second = bytes_per_second

    def stall_in(self, times: int = 1) -> None:
        """The next ``times`` bulk IN transfers end with a STALL handshake (EPIPE)."""
        with self._lock:
            self._stall_in += times

    def io_error_in(self, times: int = 1) -> None:
        """The next ``times`` bulk IN transfers fail on the bus (EPROTO: CRC, bit stuffing)."""
        with self._lock:
            self._io_errors_in += times

    def is_current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def state(self) -> ScannerState:
        with self._lock:
            assert self._state is not None
            return self._state

    def wait_until(self, predicate: Callable[[ScannerState], bool], timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(
                lambda: self._state is not None and predicate(self._state), timeout
            )

    # --- what the host does over usbdevfs ----------------------------------------------------

    def submit(self, transfer: Transfer[Handle], read_out: Callable[[], bytes]) -> int:
        """Accept a URB; 0 or the errno the SUBMITURB ioctl fails with.

        ``read_out`` fetches an OUT transfer's (or control transfer's) buffer from the client.
        """
        with self._lock:
            if not self._connected:
                return errno.ENODEV
            urb = transfer.urb
            if urb.type == URB_TYPE_CONTROL and urb.endpoint == 0:
                setup = read_out()
                if len(setup) < _SETUP.size:
                    return errno.EINVAL  # as usbfs does: no room for the setup packet
                self._control(transfer, setup)
            elif urb.type == URB_TYPE_BULK and urb.endpoint == OUT_ENDPOINT:
                self._bulk_out(transfer, read_out())
            elif urb.type == URB_TYPE_BULK and urb.endpoint == IN_ENDPOINT:
                self._pending_in.append(transfer)
            else:
                return errno.EINVAL
            self._publish()
            return 0

    def reap(self) -> Transfer[Handle] | int:
        """The next finished transfer, or the errno REAPURBNDELAY fails with (EAGAIN, ENODEV)."""
        with self._lock:
            self._fill_in_transfers()
            if self._completed:
                return self._completed.popleft()
            return errno.EAGAIN if self._connected else errno.ENODEV

    def discard(self, address: int, handle_address: Callable[[Handle], int]) -> int:
        """Cancel the pending transfer at client ``address`` (libusb's timeout or cancel)."""
        with self._lock:
            for transfer in self._pending_in:
                if handle_address(transfer.handle) == address:
                    self._pending_in.remove(transfer)
                    transfer.urb.status = -errno.ENOENT
                    self._completed.append(transfer)
                    return 0
            return errno.EINVAL

    def clear_halt(self, endpoint: int) -> int:
        with self._lock:
            if not self._connected:
                return errno.ENODEV
            self._halted.discard(endpoint)
            return 0

    def check_connected(self) -> int:
        with self._lock:
            return 0 if self._connected else errno.ENODEV

    # --- inside ------------------------------------------------------------------------------

    def _bulk_out(self, transfer: Transfer[Handle], data: bytes) -> None:
        reply = self.device.receive(data)
        transfer.urb.actual_length = len(data)
        transfer.urb.status = 0
        self._completed.append(transfer)
        if reply:
            self._enqueue(reply)

    def _enqueue(self, reply: bytes) -> None:
        now = self.clock()
        if self._bytes_per_second is None:
            self._queued.append(_Queued(now, bytearray(reply)))
            return
        start = max(now, self._queued[-1].ready_at if self._queued else now)
        size = max(1, int(self._bytes_per_second * _THROTTLE_SLICE))
        for offset in range(0, len(reply), size):
            start += size / self._bytes_per_second
            self._queued.append(_Queued(start, bytearray(reply[offset : offset + size])))

    def _fill_in_transfers(self) -> None:
        now = self.clock()
        while self._pending_in:
            transfer = self._pending_in[0]
            if IN_ENDPOINT in self._halted or self._stall_in:
                if self._stall_in:
                    self._stall_in -= 1
                    self._halted.add(IN_ENDPOINT)
                self._finish_in(transfer, b"", -errno.EPIPE)
                continue
            if self._io_errors_in:
                self._io_errors_in -= 1
                self._finish_in(transfer, b"", -errno.EPROTO)
                continue
            data = self._take(transfer.urb.buffer_length, now)
            if not data:
                return
            self._finish_in(transfer, data, 0)

    def _take(self, limit: int, now: float) -> bytes:
        out = bytearray()
        while self._queued and self._queued[0].ready_at <= now and len(out) < limit:
            head = self._queued[0]
            part = head.data[: limit - len(out)]
            out += part
            del head.data[: len(part)]
            if not head.data:
                self._queued.popleft()
        return bytes(out)

    def _finish_in(self, transfer: Transfer[Handle], data: bytes, status: int) -> None:
        self._pending_in.popleft()
        transfer.data = data
        transfer.urb.actual_length = len(data)
        transfer.urb.status = status
        self._completed.append(transfer)
        self._bytes_sent += len(data)
        self._publish()

    def _control(self, transfer: Transfer[Handle], buffer: bytes) -> None:
        urb = transfer.urb
        request_type, request, value, _index, length = _SETUP.unpack_from(buffer)
        reply: bytes | None = None
        if request_type == 0x80 and request == _GET_DESCRIPTOR:
            kind, number = value >> 8, value & 0xFF
            descriptors = self.identity.descriptors()
            if kind == _DESCRIPTOR_DEVICE:
                reply = descriptors[:18]
            elif kind == _DESCRIPTOR_CONFIGURATION and number == 0:
                reply = descriptors[18:]
            elif kind == _DESCRIPTOR_STRING:
                reply = self.identity.string(number)
        if reply is None:
            urb.status = -errno.EPIPE  # a request the device does not know: it stalls
            urb.actual_length = 0
        else:
            transfer.data = reply[:length]
            urb.actual_length = len(transfer.data)
            urb.status = 0
        self._completed.append(transfer)

    def _publish(self) -> None:
        self._state = ScannerState(
            commands=Counter(self.device.commands),
            uploads=self.device.uploads,
            rejected_packets=self.device.rejected_packets,
            placed=self.device.script.placed,
            lifts_seen=self.device.script.lifts_seen,
            plugged=self._connected,
            plug_count=self._plug_count,
            bytes_sent=self._bytes_sent,
        )
        self._lock.notify_all()
        if self.listener is not None:
            self.listener(self._state)
