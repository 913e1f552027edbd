"""The device side of the ZFM protocol as a pure state machine: bytes in, bytes out."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from firmware_bridge.errors import SensorProtocolError
from firmware_bridge.zfm_protocol import (
    BROADCAST_ADDRESS,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    PACKET_SIZES,
    SOFT_RESET_READY,
    Command,
    Confirmation,
    Packet,
    PacketId,
    PacketParser,
    SystemParameters,
    ack_packet,
    encode_packet,
    pack_image,
)
from hil.simulator.faults import FaultPlan, FirmwareError, Stall
from hil.simulator.script import BACKGROUND, FingerScript

# Status register bits reported by ReadSysPara.
_STATUS_PASSWORD_VERIFIED = 1 << 2
_STATUS_IMAGE_VALID = 1 << 3
# SetSysPara registers.
_REGISTER_BAUD = 4
_REGISTER_SECURITY = 5
_REGISTER_PACKET_SIZE = 6
_INDEX_PAGES = 4
_INDEX_PAGE_BITS = 256

_Reply = tuple[list[Packet], bytes]  # packets, then raw bytes that follow them


class ZfmDevice:
    """A ZFM / R30x / AS608 module with an empty template library and a scripted finger.

    A non-zero ``password`` must be verified (VfyPwd) before any other command is accepted.
    ``aura_led`` adds the R503's AuraLedConfig command.
    """

    def __init__(
        self,
        script: FingerScript,
        *,
        address: int = BROADCAST_ADDRESS,
        password: int = 0,
        system_id: int = 0,
        library_size: int = 300,
        security_level: int = 3,
        packet_size: int = 128,
        baud_multiplier: int = 6,
        templates: int = 0,
        aura_led: bool = False,
        seed: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        if packet_size not in PACKET_SIZES:
            raise ValueError(f"packet_size must be one of {PACKET_SIZES}")
        if not 0 <= templates <= min(library_size, _INDEX_PAGES * _INDEX_PAGE_BITS):
            raise ValueError("templates must fit in the library")
        self.script = script
        self.faults = faults if faults is not None else FaultPlan()
        self.address = address
        self.password = password
        self.system_id = system_id
        self.library_size = library_size
        self.security_level = security_level
        self.packet_size = packet_size
        self.baud_multiplier = baud_multiplier
        self.templates = templates
        self.led: tuple[int, int, int, int] | None = None
        self.commands: Counter[int] = Counter()
        self.uploads = 0
        self.rejected_packets = 0
        self._aura_led = aura_led
        self._random = random.Random(seed)
        self._parser = PacketParser(address=None)
        self._verified = password == 0
        self._image: npt.NDArray[np.uint8] | None = None
        self._image_placement: int | None = None
        self._handlers: dict[int, Callable[[bytes], _Reply]] = {
            Command.VFY_PWD: self._vfy_pwd,
            Command.READ_SYS_PARA: self._read_sys_para,
            Command.SET_SYS_PARA: self._set_sys_para,
            Command.GEN_IMG: self._gen_img,
            Command.UP_IMAGE: self._up_image,
            Command.TEMPLATE_NUM: self._template_num,
            Command.READ_INDEX_TABLE: self._read_index_table,
            Command.GET_RANDOM_CODE: self._get_random_code,
            Command.SOFT_RESET: self._soft_reset,
        }
        if aura_led:
            self._handlers[Command.AURA_LED_CONFIG] = self._aura_led_config

    def power_cycle(self) -> None:
        """Forget everything volatile, as after a reset or reconnecting the power."""
        self._parser = PacketParser(address=None)
        self._reset()

    def receive(self, data: bytes) -> bytes:
        """Take bytes from the host; return everything the device sends back for them."""
        self._parser.feed(data)
        out = bytearray()
        while True:
            try:
                packet = self._parser.next_packet()
            except SensorProtocolError:
                self.rejected_packets += 1
                out += self._answer(None)
                continue
            if packet is None:
                return bytes(out)
            if packet.pid != PacketId.COMMAND:
                # Data packets only follow DownImage / DownChar, which this model does not take.
                self.rejected_packets += 1
                continue
            self.commands[packet.payload[0]] += 1
            out += self._answer(packet)

    def _answer(self, packet: Packet | None) -> bytes:
        """The bytes sent back for a command packet, or for a garbled one (None)."""
        command = None if packet is None else packet.payload[0]
        preempted = self.faults.preempt(command)
        if isinstance(preempted, Stall):
            return b""
        if isinstance(preempted, FirmwareError):
            packets, trailer = self._ack(preempted.code)
        elif packet is None:
            packets, trailer = self._ack(Confirmation.RECEIVE_ERROR)
        else:
            packets, trailer = self._execute(packet.address, packet.payload[0], packet.payload[1:])
        return self.faults.distort(command, [encode_packet(p) for p in packets]) + trailer

    def _execute(self, address: int, command: int, params: bytes) -> _Reply:
        if address != self.address:
            return self._ack(Confirmation.WRONG_ADDRESS)
        if not self._verified and command != Command.VFY_PWD:
            return self._ack(Confirmation.PASSWORD_REQUIRED)
        handler = self._handlers.get(command)
        if handler is None:
            return self._ack(Confirmation.RECEIVE_ERROR)
        return handler(params)

    def _ack(self, code: int, data: bytes = b"") -> _Reply:
        return [ack_packet(self.address, code, data)], b""

    def _vfy_pwd(self, params: bytes) -> _Reply:
        if len(params) != 4:
            return self._ack(Confirmation.RECEIVE_ERROR)
        if int.from_bytes(params, "big") != self.password:
            return self._ack(Confirmation.WRONG_PASSWORD)
        self._verified = True
        return self._ack(Confirmation.OK)

    def _read_sys_para(self, params: bytes) -> _Reply:
        status = (_STATUS_PASSWORD_VERIFIED if self._verified else 0) | (
            _STATUS_IMAGE_VALID if self._image is not None else 0
        )
        system = SystemParameters(
            status_register=status,
            system_id=self.system_id,
            library_size=self.library_size,
            security_level=self.security_level,
            address=self.address,
            packet_size=self.packet_size,
            baud_multiplier=self.baud_multiplier,
        )
        return self._ack(Confirmation.OK, system.encode())

    def _set_sys_para(self, params: bytes) -> _Reply:
        if len(params) != 2:
            return self._ack(Confirmation.RECEIVE_ERROR)
        register, value = params
        if register == _REGISTER_BAUD and 1 <= value <= 12:
            self.baud_multiplier = value
        elif register == _REGISTER_SECURITY and 1 <= value <= 5:
            self.security_level = value
        elif register == _REGISTER_PACKET_SIZE and value < len(PACKET_SIZES):
            self.packet_size = PACKET_SIZES[value]
        else:
            return self._ack(Confirmation.INVALID_REGISTER)
        return self._ack(Confirmation.OK)

    def _gen_img(self, params: bytes) -> _Reply:
        placement = self.script.touch()
        if placement is None:
            return self._ack(Confirmation.NO_FINGER)
        self._image = placement.pixels
        self._image_placement = placement.number
        return self._ack(Confirmation.OK)

    def _up_image(self, params: bytes) -> _Reply:
        image = self._image
        if image is None:
            # Nothing captured since power-up: the buffer holds a blank frame.
            image = np.full((IMAGE_HEIGHT, IMAGE_WIDTH), BACKGROUND, dtype=np.uint8)
        data = pack_image(image)
        size = self.packet_size
        packets = [ack_packet(self.address, Confirmation.OK)]
        for start in range(0, len(data), size):
            last = start + size >= len(data)
            pid = PacketId.END_DATA if last else PacketId.DATA
            packets.append(Packet(self.address, pid, data[start : start + size]))
        self.uploads += 1
        if self._image_placement is not None:
            self.script.uploaded(self._image_placement)
        return packets, b""

    def _template_num(self, params: bytes) -> _Reply:
        return self._ack(Confirmation.OK, self.templates.to_bytes(2, "big"))

    def _read_index_table(self, params: bytes) -> _Reply:
        if len(params) != 1:
            return self._ack(Confirmation.RECEIVE_ERROR)
        page = params[0]
        if page >= _INDEX_PAGES:
            return self._ack(Confirmation.BAD_PAGE)
        # Templates occupy the lowest slots; the bitmap is LSB first within each byte.
        filled = max(0, min(_INDEX_PAGE_BITS, self.templates - page * _INDEX_PAGE_BITS))
        bitmap = ((1 << filled) - 1).to_bytes(_INDEX_PAGE_BITS // 8, "little")
        return self._ack(Confirmation.OK, bitmap)

    def _get_random_code(self, params: bytes) -> _Reply:
        return self._ack(Confirmation.OK, self._random.getrandbits(32).to_bytes(4, "big"))

    def _soft_reset(self, params: bytes) -> _Reply:
        self._reset()
        packets, _ = self._ack(Confirmation.OK)
        return packets, bytes((SOFT_RESET_READY,))

    def _reset(self) -> None:
        self._verified = self.password == 0
        self._image = None
        self._image_placement = None
        self.led = None

    def _aura_led_config(self, params: bytes) -> _Reply:
        if len(params) != 4:
            return self._ack(Confirmation.RECEIVE_ERROR)
        control, speed, colour, count = params
        self.led = (control, speed, colour, count)
        return self._ack(Confirmation.OK)
