"""Sensor errors, one class per failure kind (as python-can does for buses)."""

from __future__ import annotations


class SensorError(Exception):
    """Base of every error a sensor raises."""


class SensorOpenError(SensorError):
    """The sensor could not be opened (missing port, no permission, wrong password, no reply)."""


class SensorOperationError(SensorError):
    """The sensor answered, but the operation failed.

    ``code`` is the device's confirmation code when there is one.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class SensorProtocolError(SensorOperationError):
    """A frame from the sensor was malformed (bad checksum, address, length or packet id)."""


class SensorTimeoutError(SensorError):
    """The sensor did not answer within the operation's time limit."""


class SensorDisconnectedError(SensorError):
    """The sensor went away (serial port vanished, USB device unplugged)."""
