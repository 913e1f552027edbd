"""The slice of Linux usbdevfs (linux/usbdevice_fs.h) that libusb uses for a bulk device.

Request numbers are built the way <asm-generic/ioctl.h> builds them (x86-64 and arm64 share
that encoding and the LP64 layout of ``struct usbdevfs_urb``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
_USB = ord("U")


def _ioc(direction: int, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (_USB << 8) | number


URB_FORMAT = struct.Struct("<BBxxiIxxxxQiiiiiIQ")  # struct usbdevfs_urb, 56 bytes
URB_BUFFER_OFFSET = 16
POINTER_SIZE = 8

RESETEP = _ioc(_IOC_READ, 3, 4)
SETINTERFACE = _ioc(_IOC_READ, 4, 8)
SETCONFIGURATION = _ioc(_IOC_READ, 5, 4)
GETDRIVER = _ioc(_IOC_WRITE, 8, 4 + 256)
SUBMITURB = _ioc(_IOC_READ, 10, URB_FORMAT.size)
DISCARDURB = _ioc(_IOC_NONE, 11, 0)
REAPURB = _ioc(_IOC_WRITE, 12, POINTER_SIZE)
REAPURBNDELAY = _ioc(_IOC_WRITE, 13, POINTER_SIZE)
CLAIMINTERFACE = _ioc(_IOC_READ, 15, 4)
RELEASEINTERFACE = _ioc(_IOC_READ, 16, 4)
CONNECTINFO = _ioc(_IOC_WRITE, 17, 8)
RESET = _ioc(_IOC_NONE, 20, 0)
CLEAR_HALT = _ioc(_IOC_READ, 21, 4)
GET_CAPABILITIES = _ioc(_IOC_READ, 26, 4)
DISCONNECT_CLAIM = _ioc(_IOC_READ, 27, 4 + 4 + 256)
GET_SPEED = _ioc(_IOC_NONE, 31, 0)

# GET_CAPABILITIES bits this device model honours.
CAP_ZERO_PACKET = 0x01
CAP_BULK_CONTINUATION = 0x02
CAP_NO_PACKET_SIZE_LIM = 0x04
CAP_REAP_AFTER_DISCONNECT = 0x10

URB_TYPE_CONTROL = 2
URB_TYPE_BULK = 3

ENDPOINT_IN = 0x80


@dataclass
class Urb:
    """The fields of ``struct usbdevfs_urb`` a bulk or control transfer uses."""

    type: int
    endpoint: int
    status: int
    flags: int
    buffer: int  # client address
    buffer_length: int
    actual_length: int
    usercontext: int

    @classmethod
    def decode(cls, raw: bytes) -> Urb:
        if len(raw) < URB_FORMAT.size:
            raise ValueError(f"usbdevfs_urb is {URB_FORMAT.size} bytes, got {len(raw)}")
        (kind, endpoint, status, flags, buffer, buffer_length, actual_length, _start_frame,
         _packets, _errors, _signr, usercontext) = URB_FORMAT.unpack_from(raw)
        return cls(kind, endpoint, status, flags, buffer, buffer_length, actual_length,
                   usercontext)

    def encode(self) -> bytes:
        return URB_FORMAT.pack(self.type, self.endpoint, self.status, self.flags, self.buffer,
                               self.buffer_length, self.actual_length, 0, 0, 0, 0,
                               self.usercontext)

    @property
    def is_in(self) -> bool:
        return bool(self.endpoint & ENDPOINT_IN)
