"""Simulated ZFM / R30x fingerprint scanner on a pseudo-terminal: scripted fingers, faults."""

from hil.simulator.device import ZfmDevice
from hil.simulator.faults import (
    BadChecksum,
    DropBytes,
    Fault,
    FaultPlan,
    FirmwareError,
    Garbage,
    Stall,
    WrongAddress,
)
from hil.simulator.pty_scanner import PtyScanner, ScannerState
from hil.simulator.script import DirectoryImages, FingerScript, ImageSource, RidgeImages, fit_image
from hil.simulator.serve import serve_forever

__all__ = [
    "BadChecksum",
    "DirectoryImages",
    "DropBytes",
    "Fault",
    "FaultPlan",
    "FingerScript",
    "FirmwareError",
    "Garbage",
    "ImageSource",
    "PtyScanner",
    "RidgeImages",
    "ScannerState",
    "Stall",
    "WrongAddress",
    "ZfmDevice",
    "fit_image",
    "serve_forever",
]
