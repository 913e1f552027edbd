"""A umockdev testbed holding the simulated USB sensor; clients run unmodified pyusb/libusb.

The process holding the testbed must itself run with umockdev's preload library (umockdev
resolves its own devices through it to send uevents): :mod:`hil.usb.simulator` starts one for
you. Clients need the preload library and the testbed's directory (:meth:`client_env`).
libusb keeps one context per process whose udev monitor sees only the first testbed, so give
each client process one testbed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from hil.simulator.device import ZfmDevice
from hil.simulator.pty_scanner import ScannerState
from hil.usb.descriptors import UsbIdentity
from hil.usb.link import UsbLink

PRELOAD_LIBRARY = "libumockdev-preload.so.0"
SIMULATED_VENDOR_ID = 0x1209
SIMULATED_PRODUCT_ID = 0x0001
_BUS = 1
_SYSFS_PATH = "/devices/pci0000:00/0000:00:14.0/usb1/1-1"


def unavailable_reason() -> str | None:
    """Why umockdev cannot run here, or None when it can."""
    try:
        import gi

        gi.require_version("UMockdev", "1.0")
        from gi.repository import UMockdev  # noqa: F401
    except (ImportError, ValueError) as exc:
        return (
            f"umockdev is not usable from Python ({exc}); install the Debian packages umockdev, "
            "gir1.2-umockdev-1.0, libumockdev-dev and PyGObject (./kiosk.sh does)"
        )
    if not _preload_exists():
        return f"{PRELOAD_LIBRARY} not found; install the Debian package umockdev"
    return None


def _preload_exists() -> bool:
    for directory in ("/usr/lib", "/usr/lib64", "/lib", "/usr/local/lib"):
        root = Path(directory)
        if (root / PRELOAD_LIBRARY).exists() or any(root.glob(f"*/{PRELOAD_LIBRARY}")):
            return True
    return shutil.which("umockdev-wrapper") is not None


class UsbTestbed:
    """The simulated sensor on a mock USB bus; use as a context manager.

    :meth:`unplug` and :meth:`replug` act like the cable: the device comes back at a new
    address, freshly powered. :attr:`link` stages faults (stalls, bus errors, throttling);
    :attr:`device` stages ZFM-level ones.
    """

    def __init__(
        self,
        device: ZfmDevice,
        *,
        vendor_id: int = SIMULATED_VENDOR_ID,
        product_id: int = SIMULATED_PRODUCT_ID,
        serial_number: str = "SIM0001",
    ) -> None:
        self.device = device
        self.identity = UsbIdentity(vendor_id, product_id, serial_number)
        self.link: UsbLink[Any] = UsbLink(device, self.identity)
        self._testbed: Any = None
        self._handlers: dict[str, Any] = {}
        self._devnum = 1  # the root hub's; the sensor gets the next free address
        self._devnode: str | None = None

    @property
    def root_dir(self) -> str:
        if self._testbed is None:
            raise RuntimeError("testbed not started")
        return str(self._testbed.get_root_dir())

    @property
    def address(self) -> tuple[int, int] | None:
        """(bus, device address) while plugged in."""
        return None if self._devnode is None else (_BUS, self._devnum)

    @property
    def state(self) -> ScannerState:
        return self.link.state

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a process that should see this testbed instead of the real buses."""
        env = dict(os.environ if base is None else base)
        preload = env.get("LD_PRELOAD", "")
        env["LD_PRELOAD"] = f"{PRELOAD_LIBRARY} {preload}".strip()
        env["UMOCKDEV_DIR"] = self.root_dir
        return env

    def start(self) -> UsbTestbed:
        import gi

        gi.require_version("UMockdev", "1.0")
        from gi.repository import UMockdev

        if PRELOAD_LIBRARY not in os.environ.get("LD_PRELOAD", ""):
            # Without it, umockdev cannot resolve its own devices to send uevents.
            raise RuntimeError(f"the testbed process must start with LD_PRELOAD={PRELOAD_LIBRARY}")
        self._testbed = UMockdev.Testbed.new()
        self.replug()
        return self

    def stop(self) -> None:
        if self._testbed is None:
            return
        self.unplug()
        for devnode in list(self._handlers):
            self._testbed.detach_ioctl(devnode)
        self._handlers.clear()
        self._testbed = None

    def __enter__(self) -> UsbTestbed:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_until(self, predicate: Callable[[ScannerState], bool], timeout: float) -> bool:
        return self.link.wait_until(predicate, timeout)

    def unplug(self) -> None:
        """Pull the cable: transfers in flight fail, the node and the sysfs device go away."""
        if self._devnode is None:
            return
        self.link.disconnect()
        # libusb learns of the removal from the uevent; umockdev does not send one itself.
        self._testbed.uevent(f"/sys{_SYSFS_PATH}", "remove")
        self._testbed.remove_device(f"/sys{_SYSFS_PATH}")
        self._devnode = None

    def replug(self) -> None:
        """Plug in (again) at the next free address."""
        from hil.usb.handler import UrbHandler

        self.unplug()
        self._devnum += 1
        devnode = f"/dev/bus/usb/{_BUS:03d}/{self._devnum:03d}"
        handler = UrbHandler(self.link, self.link.connect())
        # The handler must be in place before the add uevent, or libusb may open a bare file.
        if not self._testbed.attach_ioctl(devnode, handler):
            raise RuntimeError(f"umockdev refused an ioctl handler for {devnode}")
        self._handlers[devnode] = handler
        self._testbed.add_from_string(self._record(devnode))
        self._devnode = devnode

    def _record(self, devnode: str) -> str:
        identity = self.identity
        attributes = {
            "busnum": str(_BUS),
            "devnum": str(self._devnum),
            "idVendor": f"{identity.vendor_id:04x}",
            "idProduct": f"{identity.product_id:04x}",
            "serial": identity.serial_number,
            "manufacturer": identity.manufacturer,
            "product": identity.product,
            "bConfigurationValue": "1",
            "speed": "480",
        }
        lines = [
            f"P: {_SYSFS_PATH}",
            f"N: {devnode.removeprefix('/dev/')}",
            "E: SUBSYSTEM=usb",
            "E: DEVTYPE=usb_device",
            "E: DRIVER=usb",
            f"E: BUSNUM={_BUS:03d}",
            f"E: DEVNUM={self._devnum:03d}",
            f"E: DEVNAME={devnode}",
            f"E: ID_VENDOR_ID={identity.vendor_id:04x}",
            f"E: ID_MODEL_ID={identity.product_id:04x}",
            f"E: ID_SERIAL_SHORT={identity.serial_number}",
            *(f"A: {name}={value}\\n" for name, value in attributes.items()),
            f"H: descriptors={identity.descriptors().hex()}",
        ]
        return "\n".join(lines) + "\n"


