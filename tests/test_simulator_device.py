"""The simulated ZFM device as a pure state machine: commands, finger script, sources, faults."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from firmware_bridge.zfm_protocol import (
    IMAGE_BYTES,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    Command,
    Confirmation,
    Packet,
    PacketId,
    PacketParser,
    SystemParameters,
    command_packet,
    encode_packet,
    pack_image,
)
from hil.simulator.device import ZfmDevice
from hil.simulator.faults import (
    BadChecksum,
    DropBytes,
    FaultPlan,
    FirmwareError,
    Garbage,
    Stall,
    WrongAddress,
)
from hil.simulator.script import DirectoryImages, FingerScript, RidgeImages, fit_image

ADDRESS = 0xFFFFFFFF


def ridges(
    period: float = 9.0, height: int = IMAGE_HEIGHT, width: int = IMAGE_WIDTH
) -> npt.NDArray[np.uint8]:
    y, x = np.mgrid[0:height, 0:width]
    image: npt.NDArray[np.uint8] = (
        127.5 + 127.5 * np.sin(2 * np.pi * (x + 0.5 * y) / period)
    ).astype(np.uint8)
    return image


def send(device: ZfmDevice, command: int, params: bytes = b"", address: int = ADDRESS) -> bytes:
    return device.receive(encode_packet(command_packet(address, command, params)))


def packets(wire: bytes) -> list[Packet]:
    parser = PacketParser()
    parser.feed(wire)
    found = []
    while (packet := parser.next_packet()) is not None:
        found.append(packet)
    return found


def code(device: ZfmDevice, command: int, params: bytes = b"", address: int = ADDRESS) -> int:
    (ack,) = packets(send(device, command, params, address))
    assert ack.pid == PacketId.ACK
    return ack.payload[0]


def device_with(*images: np.ndarray, **kwargs: Any) -> ZfmDevice:
    script = FingerScript()
    for image in images:
        script.place(image)
    return ZfmDevice(script, **kwargs)


def test_a_password_protected_device_refuses_commands_until_verified() -> None:
    device = device_with(password=0xC0FFEE)
    assert code(device, Command.GEN_IMG) == Confirmation.PASSWORD_REQUIRED
    assert code(device, Command.VFY_PWD, (0xBAD).to_bytes(4, "big")) == Confirmation.WRONG_PASSWORD
    assert code(device, Command.GEN_IMG) == Confirmation.PASSWORD_REQUIRED
    assert code(device, Command.VFY_PWD, (0xC0FFEE).to_bytes(4, "big")) == Confirmation.OK
    assert code(device, Command.GEN_IMG) == Confirmation.NO_FINGER


def test_a_command_for_another_address_is_answered_with_wrong_address() -> None:
    (ack,) = packets(send(device_with(address=0x1234), Command.GEN_IMG, address=ADDRESS))
    assert ack.address == 0x1234
    assert ack.payload == bytes([Confirmation.WRONG_ADDRESS])


def test_a_garbled_command_is_answered_with_a_receive_error() -> None:
    device = device_with()
    wire = bytearray(encode_packet(command_packet(ADDRESS, Command.GEN_IMG)))
    wire[-1] ^= 0x40
    (ack,) = packets(device.receive(bytes(wire)))
    assert ack.payload == bytes([Confirmation.RECEIVE_ERROR])
    assert device.rejected_packets == 1
    assert device.commands[Command.GEN_IMG] == 0


@pytest.mark.parametrize("command", [Command.SEARCH, Command.DOWN_IMAGE, 0x77])
def test_unsupported_commands_are_answered_with_a_receive_error(command: int) -> None:
    assert code(device_with(), command) == Confirmation.RECEIVE_ERROR


def test_system_parameters_report_what_the_device_was_built_with() -> None:
    device = device_with(system_id=0x0009, library_size=1000, security_level=4, packet_size=256)
    (ack,) = packets(send(device, Command.READ_SYS_PARA))
    params = SystemParameters.decode(ack.payload[1:])
    assert params == SystemParameters(
        status_register=0b0100,  # password verified (none set), no image yet
        system_id=9,
        library_size=1000,
        security_level=4,
        address=ADDRESS,
        packet_size=256,
        baud_multiplier=6,
    )


def test_set_sys_para_changes_the_packet_size_and_rejects_unknown_registers() -> None:
    device = device_with(ridges())
    assert code(device, Command.SET_SYS_PARA, bytes([6, 1])) == Confirmation.OK
    assert code(device, Command.SET_SYS_PARA, bytes([9, 1])) == Confirmation.INVALID_REGISTER
    assert code(device, Command.SET_SYS_PARA, bytes([5, 9])) == Confirmation.INVALID_REGISTER
    code(device, Command.GEN_IMG)
    data = packets(send(device, Command.UP_IMAGE))[1:]
    assert {len(p.payload) for p in data} == {64}


def test_an_upload_is_an_ack_then_data_packets_ending_with_a_last_data_packet() -> None:
    image = ridges()
    device = device_with(image)
    code(device, Command.GEN_IMG)
    ack, *data = packets(send(device, Command.UP_IMAGE))
    assert ack.payload == bytes([Confirmation.OK])
    assert len(data) == IMAGE_BYTES // 128
    assert [p.pid for p in data] == [PacketId.DATA] * (len(data) - 1) + [PacketId.END_DATA]
    assert b"".join(p.payload for p in data) == pack_image(image)


def test_a_finger_stays_until_uploaded_and_the_next_waits_for_the_lift_to_be_seen() -> None:
    first, second = ridges(9), ridges(12)
    device = device_with(first, second)
    assert code(device, Command.GEN_IMG) == Confirmation.OK
    assert code(device, Command.GEN_IMG) == Confirmation.OK  # still on the glass
    assert device.script.placed == 1
    packets(send(device, Command.UP_IMAGE))
    assert code(device, Command.GEN_IMG) == Confirmation.NO_FINGER  # lifted, and seen to be
    assert (device.script.placed, device.script.lifts_seen) == (1, 1)
    assert code(device, Command.GEN_IMG) == Confirmation.OK
    assert device.script.placed == 2
    data = packets(send(device, Command.UP_IMAGE))[1:]
    assert b"".join(p.payload for p in data) == pack_image(second)


def test_a_finger_whose_image_is_never_taken_is_lifted_after_the_persons_patience() -> None:
    # The kiosk showed an error (say the upload failed) and polls for the lift; a person lifts.
    first, second = ridges(9), ridges(12)
    script = FingerScript(patience=3)
    script.place(first)
    script.place(second)
    device = ZfmDevice(script)
    assert [code(device, Command.GEN_IMG) for _ in range(4)] == [Confirmation.OK] * 3 + [
        Confirmation.NO_FINGER
    ]
    assert (script.placed, script.lifts_seen) == (1, 1)
    assert code(device, Command.GEN_IMG) == Confirmation.OK
    data = packets(send(device, Command.UP_IMAGE))[1:]
    assert b"".join(p.payload for p in data) == pack_image(second)
    assert code(device, Command.GEN_IMG) == Confirmation.NO_FINGER
    assert (script.placed, script.lifts_seen) == (2, 2)


def test_a_finger_script_refuses_a_person_who_never_waits() -> None:
    with pytest.raises(ValueError, match="patience"):
        FingerScript(patience=0)


def test_a_finger_queued_later_is_put_down_at_the_next_genimg() -> None:
    device = device_with()
    assert code(device, Command.GEN_IMG) == Confirmation.NO_FINGER
    device.script.place(ridges())
    assert code(device, Command.GEN_IMG) == Confirmation.OK


def test_a_source_provides_placements_up_to_its_limit() -> None:
    asked: list[int] = []

    def source(index: int) -> npt.NDArray[np.uint8]:
        asked.append(index)
        return ridges(8 + index)

    device = ZfmDevice(FingerScript(source, limit=2))
    for _ in range(2):
        assert code(device, Command.GEN_IMG) == Confirmation.OK
        packets(send(device, Command.UP_IMAGE))
        assert code(device, Command.GEN_IMG) == Confirmation.NO_FINGER
    assert code(device, Command.GEN_IMG) == Confirmation.NO_FINGER
    assert asked == [0, 1]


def test_a_finger_still_being_generated_reads_as_an_empty_glass_not_a_stalled_reply() -> None:
    # A host gives up on a GenImg after a few seconds; a slow generator must not make the
    # simulated module miss that, as a real module never does.
    release = threading.Event()

    def slow_source(index: int) -> npt.NDArray[np.uint8]:
        release.wait(30)
        return ridges(8 + index)

    script = FingerScript(slow_source, limit=1, arrival_wait=0.01)
    device = ZfmDevice(script)
    assert code(device, Command.GEN_IMG) == Confirmation.NO_FINGER
    assert (script.placed, script.lifts_seen) == (0, 0)  # nothing arrived, nothing left
    release.set()
    answers = [code(device, Command.GEN_IMG) for _ in range(2000)]  # each waits on the maker
    assert Confirmation.OK in answers
    assert script.placed == 1


def test_an_upload_before_any_capture_sends_a_blank_frame() -> None:
    device = device_with()
    data = packets(send(device, Command.UP_IMAGE))[1:]
    assert b"".join(p.payload for p in data) == b"\xff" * IMAGE_BYTES


def test_template_count_and_index_table_describe_the_stored_templates() -> None:
    device = device_with(templates=10)
    (ack,) = packets(send(device, Command.TEMPLATE_NUM))
    assert ack.payload == bytes([0, 0, 10])
    (ack,) = packets(send(device, Command.READ_INDEX_TABLE, bytes([0])))
    assert ack.payload[1:3] == bytes([0xFF, 0x03])  # slots 0..9, least significant bit first
    assert ack.payload[3:] == bytes(30)
    assert code(device, Command.READ_INDEX_TABLE, bytes([4])) == Confirmation.BAD_PAGE


def test_random_codes_are_repeatable_for_a_seed() -> None:
    first = [packets(send(device_with(seed=5), Command.GET_RANDOM_CODE))[0] for _ in range(2)]
    other = packets(send(device_with(seed=6), Command.GET_RANDOM_CODE))[0]
    assert first[0] == first[1] != other
    assert len(first[0].payload) == 5


def test_soft_reset_acknowledges_then_sends_the_ready_byte_and_forgets_the_password() -> None:
    device = device_with(password=1)
    code(device, Command.VFY_PWD, (1).to_bytes(4, "big"))
    wire = send(device, Command.SOFT_RESET)
    assert wire[-1] == 0x55
    assert packets(wire[:-1])[0].payload == bytes([Confirmation.OK])
    assert code(device, Command.GEN_IMG) == Confirmation.PASSWORD_REQUIRED


def test_the_aura_led_command_exists_only_on_an_r503() -> None:
    plain, r503 = device_with(), ZfmDevice(FingerScript(), aura_led=True)
    assert (
        code(plain, Command.AURA_LED_CONFIG, bytes([1, 0x80, 2, 0])) == Confirmation.RECEIVE_ERROR
    )
    assert code(r503, Command.AURA_LED_CONFIG, bytes([1, 0x80, 2, 0])) == Confirmation.OK
    assert r503.led == (1, 0x80, 2, 0)


def test_a_firmware_error_replaces_the_command_and_does_not_consume_the_finger() -> None:
    device = device_with(ridges())
    device.faults.add(FirmwareError(command=Command.GEN_IMG, code=Confirmation.IMAGE_FAILED))
    assert code(device, Command.GEN_IMG) == Confirmation.IMAGE_FAILED
    assert device.script.placed == 0
    assert code(device, Command.GEN_IMG) == Confirmation.OK


def test_faults_fire_the_given_number_of_times_or_until_cleared() -> None:
    device = device_with()
    device.faults.add(Stall(command=Command.GEN_IMG, times=2))
    assert [send(device, Command.GEN_IMG) for _ in range(2)] == [b"", b""]
    assert code(device, Command.GEN_IMG) == Confirmation.NO_FINGER
    device.faults.add(Stall(times=None))
    assert [send(device, c) for c in (Command.GEN_IMG, Command.TEMPLATE_NUM)] == [b"", b""]
    device.faults.clear()
    assert code(device, Command.TEMPLATE_NUM) == Confirmation.OK


def test_a_fault_for_one_command_leaves_the_others_alone() -> None:
    device = device_with()
    device.faults.add(Garbage(command=Command.UP_IMAGE, data=b"\x00"))
    assert send(device, Command.GEN_IMG)[:1] == b"\xef"
    assert send(device, Command.UP_IMAGE)[:3] == b"\x00\xef\x01"


def test_wire_faults_damage_exactly_what_they_name() -> None:
    reply = [encode_packet(Packet(ADDRESS, PacketId.ACK, b"\x00")) for _ in range(2)]
    plan = FaultPlan()
    plan.add(BadChecksum(packet=1))
    plan.add(WrongAddress(address=0x01020304, packet=0))
    plan.add(Garbage(data=b"\x13\x37"))
    plan.add(DropBytes(offset=2, count=3))
    wire = plan.distort(None, reply)
    assert wire[:2] == b"\x13\x37"
    damaged = b"\x13\x37" + reply[0][:2] + bytes([1, 2, 3, 4]) + reply[0][6:]
    damaged += reply[1][:-2] + bytes(b ^ 0xFF for b in reply[1][-2:])
    assert wire == damaged[:2] + damaged[5:]
    assert plan.distort(None, reply) == b"".join(reply)


def test_a_fault_must_fire_at_least_once() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FaultPlan().add(Stall(times=0))


def test_images_of_other_sizes_are_centred_cropped_and_padded_white() -> None:
    big = ridges(height=400, width=300)
    fitted = fit_image(big)
    assert np.array_equal(fitted, big[56:344, 22:278])
    small = np.zeros((100, 50), dtype=np.uint8)
    fitted = fit_image(small)
    assert fitted.shape == (IMAGE_HEIGHT, IMAGE_WIDTH)
    assert int(fitted.sum()) == 255 * (IMAGE_HEIGHT * IMAGE_WIDTH - 100 * 50)
    assert not fitted[94:194, 103:153].any()


def test_a_colour_or_float_image_is_refused() -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        fit_image(np.zeros((10, 10, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="2-D uint8"):
        fit_image(np.zeros((10, 10), dtype=np.float32))


def test_a_directory_of_images_is_served_in_name_order_and_repeats(tmp_path: Path) -> None:
    Image.fromarray(ridges(9)).save(tmp_path / "b.tif")
    Image.fromarray(ridges(12)).convert("RGB").save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    images = DirectoryImages(tmp_path)
    assert len(images) == 2
    assert np.array_equal(images(0), ridges(12))
    assert np.array_equal(images(1), ridges(9))
    assert np.array_equal(images(2), images(0))


def test_a_directory_without_images_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no image files"):
        DirectoryImages(tmp_path)


def test_the_built_in_ridges_differ_per_placement_and_repeat_per_seed() -> None:
    source = RidgeImages(seed=3)
    assert source(0).shape == (IMAGE_HEIGHT, IMAGE_WIDTH)
    assert np.array_equal(source(0), RidgeImages(seed=3)(0))
    assert not np.array_equal(source(0), source(1))
    assert int(source(0).min()) >= 40
    assert int(source(0).std()) > 30
