"""Scriptable misbehaviour for the simulated scanner: what a flaky cable or firmware does.

A fault hits the replies to one command (or to any command), once, a given number of times, or
for as long as it stays in the plan (``times=None``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from firmware_bridge.zfm_protocol import CHECKSUM_SIZE


@dataclass(kw_only=True)
class Fault:
    """Base: which replies it hits and how often."""

    command: int | None = None  # None: the reply to whatever command comes next
    times: int | None = 1  # None: persistent

    def matches(self, command: int | None) -> bool:
        return self.command is None or self.command == command


@dataclass(kw_only=True)
class FirmwareError(Fault):
    """The device answers with confirmation ``code`` instead of doing the command."""

    code: int


@dataclass(kw_only=True)
class Stall(Fault):
    """The device swallows the command and never answers."""


@dataclass(kw_only=True)
class Garbage(Fault):
    """Noise on the line before the reply."""

    data: bytes = b"\x00\xff\x55\xef\x13"


@dataclass(kw_only=True)
class DropBytes(Fault):
    """``count`` bytes of the reply are lost, starting ``offset`` bytes into it."""

    count: int = 1
    offset: int = 0


@dataclass(kw_only=True)
class BadChecksum(Fault):
    """Reply packet number ``packet`` (0 = the acknowledgement) arrives with a wrong checksum."""

    packet: int = 0


@dataclass(kw_only=True)
class WrongAddress(Fault):
    """Reply packet number ``packet`` carries another device's address."""

    address: int = 0x12345678
    packet: int = 0


@dataclass
class FaultPlan:
    """The faults waiting to happen; safe to change from another thread while a device runs."""

    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, fault: Fault) -> None:
        if fault.times is not None and fault.times < 1:
            raise ValueError("times must be at least 1, or None for a persistent fault")
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def preempt(self, command: int | None) -> FirmwareError | Stall | None:
        """The fault, if any, that replaces the device's own handling of ``command``."""
        with self._lock:
            for fault in self._faults:
                if isinstance(fault, FirmwareError | Stall) and fault.matches(command):
                    self._use(fault)
                    return fault
        return None

    def distort(self, command: int | None, frames: list[bytes]) -> bytes:
        """Apply every matching wire fault to the encoded reply ``frames``."""
        frames = list(frames)
        before = b""
        drops: list[DropBytes] = []
        with self._lock:
            for fault in list(self._faults):
                if isinstance(fault, FirmwareError | Stall) or not fault.matches(command):
                    continue
                if isinstance(fault, BadChecksum | WrongAddress) and fault.packet >= len(frames):
                    continue
                self._use(fault)
                if isinstance(fault, Garbage):
                    before += fault.data
                elif isinstance(fault, DropBytes):
                    drops.append(fault)
                elif isinstance(fault, BadChecksum):
                    frames[fault.packet] = _flip_checksum(frames[fault.packet])
                elif isinstance(fault, WrongAddress):
                    frames[fault.packet] = _readdress(frames[fault.packet], fault.address)
        wire = before + b"".join(frames)
        for drop in drops:
            wire = wire[: drop.offset] + wire[drop.offset + drop.count :]
        return wire

    def _use(self, fault: Fault) -> None:
        if fault.times is None:
            return
        fault.times -= 1
        if fault.times == 0:
            self._faults.remove(fault)


def _flip_checksum(frame: bytes) -> bytes:
    return frame[:-CHECKSUM_SIZE] + bytes(b ^ 0xFF for b in frame[-CHECKSUM_SIZE:])


def _readdress(frame: bytes, address: int) -> bytes:
    # The checksum does not cover the address, so the frame stays otherwise valid.
    return frame[:2] + address.to_bytes(4, "big") + frame[6:]
