"""A umockdev ioctl handler that answers libusb's usbdevfs requests from a :class:`UsbLink`.

It runs on the testbed's worker thread; libusb in the client process sees a real usbfs node.
"""

from __future__ import annotations

import errno
import logging
import struct
from typing import Any

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

from hil.usb import usbdevfs  # noqa: E402
from hil.usb.link import Transfer, UsbLink  # noqa: E402

log = logging.getLogger(__name__)

_CAPABILITIES = (
    usbdevfs.CAP_ZERO_PACKET
    | usbdevfs.CAP_BULK_CONTINUATION
    | usbdevfs.CAP_NO_PACKET_SIZE_LIM
    | usbdevfs.CAP_REAP_AFTER_DISCONNECT
)
_URB_STATUS_OFFSET = 4
_URB_ACTUAL_LENGTH_OFFSET = 28
_CONTROL_SETUP_SIZE = 8
_ACCEPTED = frozenset(
    {
        usbdevfs.SETCONFIGURATION,
        usbdevfs.SETINTERFACE,
        usbdevfs.CLAIMINTERFACE,
        usbdevfs.RELEASEINTERFACE,
        usbdevfs.RESET,
        usbdevfs.RESETEP,
    }
)

# IoctlData objects of the URBs libusb has submitted: (urb struct, its buffer).
_Handle = tuple[Any, Any]


class UrbHandler(UMockdev.IoctlBase):  # type: ignore[misc]
    """One plugged-in instance of the device; after an unplug it answers ENODEV for good."""

    def __init__(self, link: UsbLink[_Handle], generation: int) -> None:
        super().__init__()
        self._link = link
        self._generation = generation

    def do_handle_ioctl(self, client: Any) -> bool:
        try:
            self._handle(client)
        except Exception:
            # A bug here must fail the client's ioctl, never leave it waiting for an answer.
            log.exception("usbdevfs request 0x%08x failed in the simulator", client.get_request())
            client.complete(-1, errno.EIO)
        return True

    def _handle(self, client: Any) -> None:
        request = client.get_request()
        arg = client.get_arg()
        if not self._link.is_current(self._generation):
            self._complete(client, errno.ENODEV)
        elif request == usbdevfs.SUBMITURB:
            self._complete(client, self._submit(arg))
        elif request in (usbdevfs.REAPURBNDELAY, usbdevfs.REAPURB):
            self._reap(client, arg)
        elif request == usbdevfs.DISCARDURB:
            address = struct.unpack("<Q", bytes(arg.retrieve())[:8])[0]
            self._complete(client, self._link.discard(address, lambda h: int(h[0].client_addr)))
        elif request == usbdevfs.GET_CAPABILITIES:
            if (failure := self._link.check_connected()) == 0:
                arg.resolve(0, 4).update(0, list(struct.pack("<I", _CAPABILITIES)))
            self._complete(client, failure)
        elif request == usbdevfs.CLEAR_HALT:
            endpoint = struct.unpack("<I", bytes(arg.resolve(0, 4).retrieve()))[0]
            self._complete(client, self._link.clear_halt(endpoint))
        elif request == usbdevfs.GETDRIVER:
            # No kernel driver is bound to a vendor-specific interface.
            self._complete(client, self._link.check_connected() or errno.ENODATA)
        elif request in _ACCEPTED:
            self._complete(client, self._link.check_connected())
        else:
            self._complete(client, self._link.check_connected() or errno.ENOTTY)

    def _submit(self, arg: Any) -> int:
        urb_data = arg.resolve(0, usbdevfs.URB_FORMAT.size)
        urb = usbdevfs.Urb.decode(bytes(urb_data.retrieve()))
        if not 0 <= urb.buffer_length <= 1 << 20:
            return errno.EINVAL
        buffer = urb_data.resolve(usbdevfs.URB_BUFFER_OFFSET, urb.buffer_length)
        return self._link.submit(
            Transfer(urb, (urb_data, buffer)), lambda: bytes(buffer.retrieve())
        )

    def _reap(self, client: Any, arg: Any) -> None:
        finished = self._link.reap()
        if isinstance(finished, int):
            self._complete(client, finished)
            return
        urb_data, buffer = finished.handle
        urb = finished.urb
        if finished.data:
            offset = _CONTROL_SETUP_SIZE if urb.type == usbdevfs.URB_TYPE_CONTROL else 0
            buffer.update(offset, list(finished.data))
        urb_data.update(_URB_STATUS_OFFSET, list(struct.pack("<i", urb.status)))
        urb_data.update(_URB_ACTUAL_LENGTH_OFFSET, list(struct.pack("<i", urb.actual_length)))
        arg.resolve(0, usbdevfs.POINTER_SIZE).set_ptr(0, urb_data)
        self._complete(client, 0)

    @staticmethod
    def _complete(client: Any, failure: int) -> None:
        if failure:
            client.complete(-1, failure)
        else:
            client.complete(0, 0)
