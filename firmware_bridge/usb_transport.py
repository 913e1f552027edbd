"""ByteTransport over USB bulk endpoints (pyusb, libusb-1.0 backend).

Framing: the ZFM packets of the serial protocol, byte for byte, as a stream. The host sends
each command packet as one bulk OUT transfer on the vendor interface's OUT endpoint; the device
sends its acknowledgement and data packets on the IN endpoint, split across USB packets however
it likes. Packet boundaries carry no meaning: the ZFM header, length and checksum delimit
frames, exactly as on a UART. Each read asks for one max-size USB packet, so a transfer that
times out can never have swallowed bytes that then go missing from the stream.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import usb.backend.libusb1
import usb.core
import usb.util

from firmware_bridge.errors import (
    SensorDisconnectedError,
    SensorError,
    SensorOpenError,
    SensorProtocolError,
    SensorTimeoutError,
)

log = logging.getLogger(__name__)

VENDOR_SPECIFIC_CLASS = 0xFF
_CONFIGURATION = 1
# Bus-level faults of one transfer: a CRC or bit-stuffing error, babble. The link is still
# there, only this exchange is garbled.
_LINE_ERRORS = frozenset({errno.EIO, errno.EPROTO, errno.EOVERFLOW, errno.EILSEQ})
_GONE_ERRORS = frozenset({errno.ENODEV, errno.ESHUTDOWN, errno.ENOENT})


@dataclass(frozen=True)
class UsbDeviceFound:
    """A matching device on the bus, before it is opened."""

    vendor_id: int
    product_id: int
    bus: int
    address: int
    serial_number: str | None
    device: Any  # usb.core.Device

    @property
    def location(self) -> str:
        return f"usb:{self.bus:03d}:{self.address:03d}"


def _backend() -> Any:
    backend = usb.backend.libusb1.get_backend()
    if backend is None:
        raise SensorOpenError("libusb-1.0 is not installed (Debian package libusb-1.0-0)")
    return backend


def read_serial_number(device: Any) -> str | None:
    """The device's serial number string, or None if it has none or will not say."""
    if not device.iSerialNumber:
        return None
    try:
        return str(usb.util.get_string(device, device.iSerialNumber))
    except (usb.core.USBError, ValueError, NotImplementedError):
        return None


def find_devices(vendor_id: int, product_id: int) -> list[UsbDeviceFound]:
    """Every attached device with this id, with its serial number where it answers."""
    try:
        devices = list(
            usb.core.find(
                find_all=True, idVendor=vendor_id, idProduct=product_id, backend=_backend()
            )
        )
    except usb.core.USBError as exc:
        raise SensorOpenError(f"cannot list USB devices: {exc}") from exc
    return [
        UsbDeviceFound(
            vendor_id=vendor_id,
            product_id=product_id,
            bus=int(dev.bus),
            address=int(dev.address),
            serial_number=read_serial_number(dev),
            device=dev,
        )
        for dev in devices
    ]


class UsbTransport:
    """The sensor's vendor interface, claimed for this process until :meth:`close`.

    ``serial_number`` picks one device when several with the same id are attached.
    """

    def __init__(self, vendor_id: int, product_id: int, serial_number: str | None = None) -> None:
        self._id = f"{vendor_id:04x}:{product_id:04x}"
        found = self._select(find_devices(vendor_id, product_id), serial_number)
        self._device = found.device
        self._description = f"usb {self._id} at {found.location}"
        self.found = found
        self._buffer = b""
        self._interface: int | None = None
        try:
            self._ep_out, self._ep_in, self._interface = self._claim()
        except usb.core.USBError as exc:
            self.close()
            if exc.errno in _GONE_ERRORS:
                raise SensorOpenError(f"{self._description}: device went away: {exc}") from exc
            if exc.errno == errno.EACCES:
                raise SensorOpenError(
                    f"{self._description}: permission denied; install the udev rule "
                    "(systemd/70-kiosk-sensor.rules) and run as a member of group kiosk-edge"
                ) from exc
            raise SensorOpenError(f"{self._description}: cannot claim the sensor: {exc}") from exc
        except SensorError:
            self.close()
            raise
        self._packet = int(self._ep_in.wMaxPacketSize) or 64

    def _select(self, found: list[UsbDeviceFound], serial_number: str | None) -> UsbDeviceFound:
        if serial_number is not None:
            found = [f for f in found if f.serial_number == serial_number]
            if not found:
                raise SensorOpenError(
                    f"no USB sensor {self._id} with serial number {serial_number}"
                )
        if not found:
            raise SensorOpenError(f"no USB sensor {self._id} attached")
        if len(found) > 1:
            serials = ", ".join(str(f.serial_number) for f in found)
            raise SensorOpenError(
                f"{len(found)} USB sensors {self._id} attached (serial numbers {serials}); "
                "configure serial_number to pick one"
            )
        return found[0]

    def _claim(self) -> tuple[Any, Any, int]:
        device = self._device
        try:
            active = device.get_active_configuration().bConfigurationValue
        except usb.core.USBError:
            active = None  # unconfigured
        if active != _CONFIGURATION:
            device.set_configuration(_CONFIGURATION)
        configuration = device.get_active_configuration()
        for interface in configuration:
            if interface.bInterfaceClass != VENDOR_SPECIFIC_CLASS:
                continue
            out = _bulk_endpoint(interface, usb.util.ENDPOINT_OUT)
            into = _bulk_endpoint(interface, usb.util.ENDPOINT_IN)
            if out is None or into is None:
                continue
            number = int(interface.bInterfaceNumber)
            with contextlib.suppress(NotImplementedError, usb.core.USBError):
                if device.is_kernel_driver_active(number):
                    device.detach_kernel_driver(number)
            usb.util.claim_interface(device, number)
            return out, into, number
        raise SensorOpenError(
            f"{self._description}: no vendor-specific interface with bulk IN and OUT endpoints"
        )

    @property
    def description(self) -> str:
        return self._description

    def write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self._ep_out.write(bytes(view), timeout=_timeout_ms(deadline))
            except usb.core.USBTimeoutError as exc:
                raise SensorTimeoutError(
                    f"{self._description}: timed out writing {len(data)} bytes"
                ) from exc
            except usb.core.USBError as exc:
                raise self._failed(exc, self._ep_out) from exc
            view = view[sent:]

    def read(self, max_bytes: int, deadline: float) -> bytes:
        if not self._buffer:
            if deadline <= time.monotonic():
                return b""
            try:
                self._buffer = bytes(self._ep_in.read(self._packet, timeout=_timeout_ms(deadline)))
            except usb.core.USBTimeoutError:
                return b""
            except usb.core.USBError as exc:
                raise self._failed(exc, self._ep_in) from exc
        data, self._buffer = self._buffer[:max_bytes], self._buffer[max_bytes:]
        return data

    def discard_input(self) -> None:
        self._buffer = b""

    def close(self) -> None:
        device, self._device = self._device, None
        if device is None:
            return
        # A device that is already gone has nothing left to release.
        with contextlib.suppress(usb.core.USBError):
            if self._interface is not None:
                usb.util.release_interface(device, self._interface)
        with contextlib.suppress(usb.core.USBError):
            usb.util.dispose_resources(device)

    def _failed(self, exc: usb.core.USBError, endpoint: Any) -> SensorError:
        if self._device is None:
            return SensorDisconnectedError(f"{self._description}: transport is closed")
        if exc.errno in _GONE_ERRORS:
            return SensorDisconnectedError(f"{self._description}: device disconnected ({exc})")
        if exc.errno == errno.EPIPE:
            # The endpoint halted; it stays halted until the host clears it.
            try:
                endpoint.clear_halt()
            except usb.core.USBError as clear_exc:
                if clear_exc.errno in _GONE_ERRORS:
                    return SensorDisconnectedError(
                        f"{self._description}: device disconnected ({clear_exc})"
                    )
            return SensorProtocolError(f"{self._description}: endpoint stalled ({exc})")
        if exc.errno in _LINE_ERRORS:
            return SensorProtocolError(f"{self._description}: transfer failed ({exc})")
        return SensorDisconnectedError(f"{self._description}: USB failure ({exc})")


def _bulk_endpoint(interface: Any, direction: int) -> Any:
    for endpoint in interface:
        if (
            usb.util.endpoint_type(endpoint.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
            and usb.util.endpoint_direction(endpoint.bEndpointAddress) == direction
        ):
            return endpoint
    return None


def _timeout_ms(deadline: float) -> int:
    # libusb reads 0 as "wait forever": a deadline that has passed still gets one millisecond.
    return max(1, math.ceil((deadline - time.monotonic()) * 1000))
