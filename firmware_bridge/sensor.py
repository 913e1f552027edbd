"""The one small interface every sensor implements; the daemon never knows which one it has."""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt


class Led(enum.Enum):
    """Operator feedback states; each implementation maps them to what its hardware can show."""

    OFF = "off"
    READY = "ready"  # waiting for a finger
    BUSY = "busy"  # capturing / uploading
    OK = "ok"  # capture accepted
    ERROR = "error"  # capture rejected, place again


@dataclass(frozen=True)
class SensorInfo:
    """What the device says about itself, plus how we reached it."""

    model: str
    transport: str  # "serial" or "usb"
    port: str  # tty path or USB bus/address
    identity: str  # stable identity string stamped on every capture
    serial_number: str | None = None
    address: int | None = None
    packet_size: int | None = None
    baudrate: int | None = None
    library_size: int | None = None
    security_level: int | None = None
    system_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FingerImage:
    """One raw capture: 8-bit grey pixels, row-major, top-left origin."""

    pixels: npt.NDArray[np.uint8]  # shape (height, width)
    ppi: float
    sensor: str  # SensorInfo.identity of the device that took it
    captured_at: datetime  # timezone-aware UTC

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


class Sensor(abc.ABC):
    """A fingerprint sensor. Implementations raise only :mod:`firmware_bridge.errors` classes."""

    @abc.abstractmethod
    def open(self) -> None:
        """Open the link and authenticate; raises SensorOpenError."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device; safe to call twice or after a disconnect."""

    @property
    @abc.abstractmethod
    def info(self) -> SensorInfo:
        """Device information read at open()."""

    @abc.abstractmethod
    def wait_for_finger(self, timeout: float) -> bool:
        """Block until a finger is on the sensor and an image is taken, or ``timeout`` s pass.

        Returns False on timeout with no finger; the caller then simply asks again.
        """

    @abc.abstractmethod
    def wait_for_lift(self, timeout: float) -> bool:
        """Block until no finger is on the sensor; False if it is still there after ``timeout``."""

    @abc.abstractmethod
    def capture(self) -> FingerImage:
        """Download the image taken by the last successful :meth:`wait_for_finger`."""

    @abc.abstractmethod
    def set_led(self, state: Led) -> None:
        """Show operator feedback; a sensor without LEDs ignores it."""

    def __enter__(self) -> Sensor:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


SensorFactory = Callable[..., Sensor]
_REGISTRY: dict[str, SensorFactory] = {}


def register_sensor(kind: str, factory: SensorFactory) -> None:
    """Make an implementation selectable by name from configuration."""
    _REGISTRY[kind] = factory


def make_sensor(kind: str, **settings: Any) -> Sensor:
    """Build (not open) the sensor named by ``kind`` ("serial" or "usb") with its settings."""
    # Importing the implementations registers them; done here so importing the interface stays
    # light.
    from firmware_bridge import zfm_serial, zfm_usb  # noqa: F401

    try:
        factory = _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown sensor kind {kind!r}; known: {sorted(_REGISTRY)}") from None
    return factory(**settings)
