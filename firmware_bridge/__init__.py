"""Host side of the fingerprint-sensor link."""

from firmware_bridge.errors import (
    SensorDisconnectedError,
    SensorError,
    SensorOpenError,
    SensorOperationError,
    SensorProtocolError,
    SensorTimeoutError,
)
from firmware_bridge.sensor import FingerImage, Led, Sensor, SensorInfo, make_sensor

__all__ = [
    "FingerImage",
    "Led",
    "Sensor",
    "SensorDisconnectedError",
    "SensorError",
    "SensorInfo",
    "SensorOpenError",
    "SensorOperationError",
    "SensorProtocolError",
    "SensorTimeoutError",
    "make_sensor",
]
