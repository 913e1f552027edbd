"""The ZFM command client over an in-memory link to the simulated device: replies, retries, faults.

The link delivers a reply the moment the command is written and reports "deadline passed" as soon
as nothing is left to read, so timeouts cost no wall-clock time here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.errors import SensorOperationError, SensorProtocolError, SensorTimeoutError
from firmware_bridge.zfm_client import ZfmClient
from firmware_bridge.zfm_protocol import (
    IMAGE_BYTES,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    Command,
    Confirmation,
    Packet,
    PacketId,
    ack_packet,
    encode_packet,
    pack_image,
)
from hil.simulator.device import ZfmDevice
from hil.simulator.faults import BadChecksum, FirmwareError, Garbage, Stall
from hil.simulator.script import FingerScript

ADDRESS = 0xFFFFFFFF


def ridges(period: float = 9.0) -> npt.NDArray[np.uint8]:
    y, x = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH]
    image: npt.NDArray[np.uint8] = (
        127.5 + 127.5 * np.sin(2 * np.pi * (x + 0.5 * y) / period)
    ).astype(np.uint8)
    return image


class DeviceLink:
    """ByteTransport to a ZfmDevice in the same process; ``tamper`` rewrites the next reply."""

    description = "memory link"

    def __init__(self, device: ZfmDevice) -> None:
        self.device = device
        self.tamper: Callable[[bytes], bytes] | None = None
        self._inbox = bytearray()

    def write(self, data: bytes, deadline: float) -> None:
        reply = self.device.receive(data)
        if self.tamper is not None:
            reply, self.tamper = self.tamper(reply), None
        self._inbox += reply

    def read(self, max_bytes: int, deadline: float) -> bytes:
        chunk = bytes(self._inbox[:max_bytes])
        del self._inbox[:max_bytes]
        return chunk

    def discard_input(self) -> None:
        self._inbox.clear()

    def close(self) -> None:
        self._inbox.clear()


class CannedLink(DeviceLink):
    """Answers every command with the same bytes, whatever the device would say."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(ZfmDevice(FingerScript()))
        self.reply = reply

    def write(self, data: bytes, deadline: float) -> None:
        self._inbox += self.reply


def make_client(device: ZfmDevice, retries: int = 2) -> tuple[ZfmClient, DeviceLink]:
    link = DeviceLink(device)
    return ZfmClient(link, address=ADDRESS, timeout=1.0, retries=retries), link


def finger_device(*images: np.ndarray, **kwargs: Any) -> ZfmDevice:
    script = FingerScript()
    for image in images:
        script.place(image)
    return ZfmDevice(script, **kwargs)


def flip(index: int, xor: int) -> Callable[[bytes], bytes]:
    def tamper(reply: bytes) -> bytes:
        damaged = bytearray(reply)
        damaged[index % len(damaged)] ^= xor
        return bytes(damaged)

    return tamper


def test_password_check_reports_the_confirmation_code() -> None:
    client, _ = make_client(finger_device(password=0x1234))
    assert client.verify_password(0x9999) == Confirmation.WRONG_PASSWORD
    assert client.verify_password(0x1234) == Confirmation.OK


def test_system_parameters_come_back_as_the_device_holds_them() -> None:
    client, _ = make_client(finger_device(system_id=7, library_size=1000, packet_size=64))
    params = client.read_system_parameters()
    assert (params.system_id, params.library_size, params.packet_size) == (7, 1000, 64)
    assert params.address == ADDRESS


def test_an_uploaded_image_is_the_packed_image_of_the_finger() -> None:
    image = ridges()
    client, _ = make_client(finger_device(image))
    assert client.gen_img() == Confirmation.OK
    assert client.up_image(128) == pack_image(image)


@pytest.mark.parametrize("packet_size", [32, 64, 128, 256])
def test_uploads_work_for_every_packet_size(packet_size: int) -> None:
    client, _ = make_client(finger_device(ridges(), packet_size=packet_size))
    client.gen_img()
    assert len(client.up_image(packet_size)) == IMAGE_BYTES


def test_a_garbled_genimg_reply_is_retried() -> None:
    device = finger_device(ridges())
    device.faults.add(BadChecksum(command=Command.GEN_IMG))
    client, _ = make_client(device)
    assert client.gen_img() == Confirmation.OK
    assert device.commands[Command.GEN_IMG] == 2


def test_noise_before_a_reply_is_skipped_without_a_retry() -> None:
    device = finger_device()
    device.faults.add(Garbage(command=Command.GEN_IMG))
    client, _ = make_client(device)
    assert client.gen_img() == Confirmation.NO_FINGER
    assert device.commands[Command.GEN_IMG] == 1


def test_replies_garbled_more_often_than_the_retries_allow_fail_by_name() -> None:
    device = finger_device()
    device.faults.add(BadChecksum(command=Command.READ_SYS_PARA, times=3))
    client, _ = make_client(device, retries=2)
    with pytest.raises(SensorProtocolError, match="reply to READ_SYS_PARA: checksum mismatch"):
        client.read_system_parameters()
    assert device.commands[Command.READ_SYS_PARA] == 3


def test_a_silent_device_times_out_once_without_retrying() -> None:
    device = finger_device()
    device.faults.add(Stall(command=Command.GEN_IMG))
    client, _ = make_client(device)
    with pytest.raises(SensorTimeoutError, match="no reply to GEN_IMG within 1 s"):
        client.gen_img()
    assert device.commands[Command.GEN_IMG] == 1


def test_a_corrupt_image_data_packet_fails_the_upload_without_retrying_it() -> None:
    device = finger_device(ridges(), ridges(11))
    device.faults.add(BadChecksum(command=Command.UP_IMAGE, packet=5))
    client, _ = make_client(device)
    client.gen_img()
    with pytest.raises(SensorProtocolError, match="image data packet 4: checksum mismatch"):
        client.up_image(128)
    assert device.commands[Command.UP_IMAGE] == 1
    # The rest of the broken stream does not leak into the next exchange.
    assert client.gen_img() == Confirmation.NO_FINGER


def test_a_refused_upload_raises_with_the_firmware_code() -> None:
    device = finger_device(ridges())
    device.faults.add(
        FirmwareError(command=Command.UP_IMAGE, code=Confirmation.IMAGE_UPLOAD_FAILED)
    )
    client, _ = make_client(device)
    client.gen_img()
    with pytest.raises(SensorOperationError, match=r"UP_IMAGE failed: 0x0F") as caught:
        client.up_image(128)
    assert caught.value.code == Confirmation.IMAGE_UPLOAD_FAILED


def test_data_packets_of_the_wrong_size_fail_the_upload() -> None:
    client, _ = make_client(finger_device(ridges(), packet_size=64))
    client.gen_img()
    with pytest.raises(SensorProtocolError, match="64 bytes, device packet size is 128"):
        client.up_image(128)


def test_a_reply_with_the_wrong_number_of_data_bytes_is_a_protocol_error() -> None:
    short = encode_packet(ack_packet(ADDRESS, Confirmation.OK, bytes(15)))
    client = ZfmClient(CannedLink(short), address=ADDRESS, timeout=1.0, retries=0)
    with pytest.raises(SensorProtocolError, match="carries 15 data bytes, expected 16"):
        client.read_system_parameters()


def test_a_failure_reply_without_data_bytes_is_accepted() -> None:
    refusal = encode_packet(ack_packet(ADDRESS, Confirmation.RECEIVE_ERROR))
    client = ZfmClient(CannedLink(refusal), address=ADDRESS, timeout=1.0)
    with pytest.raises(SensorOperationError, match="READ_SYS_PARA failed: 0x01"):
        client.read_system_parameters()


def test_a_data_packet_where_an_acknowledgement_belongs_is_a_protocol_error() -> None:
    stray = encode_packet(Packet(ADDRESS, PacketId.DATA, bytes(128)))
    client = ZfmClient(CannedLink(stray), address=ADDRESS, timeout=1.0, retries=0)
    with pytest.raises(SensorProtocolError, match="expected an acknowledgement"):
        client.gen_img()


@settings(max_examples=150)
@given(
    st.sampled_from([Command.GEN_IMG, Command.READ_SYS_PARA, Command.VFY_PWD]),
    st.integers(0, 27),
    st.integers(1, 255),
)
def test_a_reply_with_any_single_corrupted_byte_never_passes_as_an_answer(
    command: Command, index: int, xor: int
) -> None:
    client, link = make_client(finger_device(ridges()), retries=0)
    link.tamper = flip(index, xor)
    with pytest.raises((SensorProtocolError, SensorTimeoutError)):
        if command == Command.GEN_IMG:
            client.gen_img()
        elif command == Command.READ_SYS_PARA:
            client.read_system_parameters()
        else:
            client.verify_password(0)


@settings(max_examples=60)
@given(st.integers(12, 12 + 288 * 139 - 1), st.integers(1, 255))
def test_an_upload_with_any_single_corrupted_byte_never_returns_an_image(
    index: int, xor: int
) -> None:
    client, link = make_client(finger_device(ridges()))
    client.gen_img()
    link.tamper = flip(index, xor)
    with pytest.raises((SensorProtocolError, SensorTimeoutError)):
        client.up_image(128)
