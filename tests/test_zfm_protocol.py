"""ZFM packet framing, system parameters and 4-bit images: exact bytes, limits and resync."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from firmware_bridge.errors import SensorProtocolError
from firmware_bridge.zfm_protocol import (
    CONFIRMATION_MESSAGES,
    FRAME_OVERHEAD,
    IMAGE_BYTES,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    MAX_PAYLOAD,
    Command,
    Packet,
    PacketId,
    PacketParser,
    SystemParameters,
    command_packet,
    describe_confirmation,
    encode_packet,
    pack_image,
    quantize_image,
    unpack_image,
)

# A longest frame of zero bytes: enough to complete any frame a corrupted length claims.
PADDING = bytes(MAX_PAYLOAD + FRAME_OVERHEAD)

packets = st.builds(
    Packet,
    address=st.integers(0, 0xFFFFFFFF),
    pid=st.sampled_from([int(p) for p in PacketId]),
    payload=st.binary(min_size=1, max_size=MAX_PAYLOAD),
)


def parse_all(data: bytes, address: int | None = None) -> tuple[list[Packet], list[str]]:
    """Every packet and every error message the parser produces for ``data``."""
    parser = PacketParser(address=address)
    parser.feed(data)
    found: list[Packet] = []
    errors: list[str] = []
    while True:
        try:
            packet = parser.next_packet()
        except SensorProtocolError as exc:
            errors.append(str(exc))
            continue
        if packet is None:
            return found, errors
        found.append(packet)


def test_genimg_command_encodes_to_the_datasheet_bytes() -> None:
    assert encode_packet(command_packet(0xFFFFFFFF, Command.GEN_IMG)) == bytes.fromhex(
        "EF01 FFFFFFFF 01 0003 01 0005"
    )


def test_vfypwd_command_carries_the_password_big_endian() -> None:
    wire = encode_packet(command_packet(0xFFFFFFFF, Command.VFY_PWD, bytes.fromhex("00000000")))
    assert wire == bytes.fromhex("EF01 FFFFFFFF 01 0007 13 00000000 001B")


@given(packets)
def test_any_packet_survives_an_encode_parse_round_trip(packet: Packet) -> None:
    assert parse_all(encode_packet(packet)) == ([packet], [])


@given(st.lists(packets, min_size=1, max_size=5), st.data())
def test_packets_split_at_any_points_are_reassembled(
    packets_: list[Packet], data: st.DataObject
) -> None:
    wire = b"".join(encode_packet(p) for p in packets_)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    parser = PacketParser()
    found = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        parser.feed(wire[start:end])
        while (packet := parser.next_packet()) is not None:
            found.append(packet)
    assert found == packets_
    assert parser.pending == 0


@given(st.binary(max_size=600).filter(lambda g: b"\xef\x01" not in g), packets)
def test_garbage_before_a_packet_is_skipped_and_counted(garbage: bytes, packet: Packet) -> None:
    parser = PacketParser()
    parser.feed(garbage + encode_packet(packet))
    assert parser.next_packet() == packet
    assert parser.discarded == len(garbage)


@given(packets, packets, st.data())
def test_every_single_byte_corruption_is_detected_or_resynchronised(
    damaged: Packet, following: Packet, data: st.DataObject
) -> None:
    following = replace(following, address=damaged.address)
    wire = bytearray(encode_packet(damaged))
    index = data.draw(st.integers(0, len(wire) - 1), label="index")
    wire[index] ^= data.draw(st.integers(1, 255), label="xor")
    found, errors = parse_all(bytes(wire) + encode_packet(following) + PADDING, damaged.address)
    # The damaged packet never comes out as if it were intact, and the next one always does.
    assert damaged not in found or damaged == following
    assert found[-1] == following
    if index < 2:  # a broken header makes the frame garbage
        assert found == [following]
    elif index not in (7, 8):  # anything but the length is caught by checksum or address
        assert errors
    # A corrupted length can frame a shorter packet whose checksum happens to match: the additive
    # checksum cannot catch that, the client's check of each reply's size does.


@given(packets, st.integers(0, 0xFFFFFFFF))
def test_a_packet_for_another_address_is_rejected_by_name(packet: Packet, expected: int) -> None:
    found, errors = parse_all(encode_packet(packet), address=expected)
    if packet.address == expected:
        assert found == [packet]
    else:
        assert found == []
        assert errors == [f"packet from address 0x{packet.address:08X}, expected 0x{expected:08X}"]


def test_an_oversized_length_is_rejected_before_any_payload_arrives() -> None:
    parser = PacketParser()
    parser.feed(bytes.fromhex("EF01 FFFFFFFF 02 FFFF"))
    with pytest.raises(SensorProtocolError, match="length field 65535 out of range"):
        parser.next_packet()
    assert parser.pending == 0


def test_the_payload_limit_can_be_lowered() -> None:
    wire = encode_packet(Packet(0xFFFFFFFF, PacketId.DATA, bytes(64)))
    parser = PacketParser(max_payload=32)
    parser.feed(wire)
    with pytest.raises(SensorProtocolError, match=r"out of range 3\.\.34"):
        parser.next_packet()


def test_an_empty_payload_is_rejected() -> None:
    parser = PacketParser()
    parser.feed(bytes.fromhex("EF01 FFFFFFFF 07 0002 0009"))
    with pytest.raises(SensorProtocolError, match="length field 2"):
        parser.next_packet()


def test_an_unknown_packet_id_is_rejected_by_name() -> None:
    parser = PacketParser()
    parser.feed(bytes.fromhex("EF01 FFFFFFFF 05 0003 00 0008"))
    with pytest.raises(SensorProtocolError, match="unknown packet id 0x05"):
        parser.next_packet()


def test_a_flood_of_garbage_does_not_accumulate() -> None:
    parser = PacketParser()
    for _ in range(100):
        parser.feed(b"\x00\x13\xef" * 10_000)
        assert parser.next_packet() is None
        assert parser.pending <= 1


def test_a_header_split_across_reads_is_kept() -> None:
    wire = encode_packet(command_packet(0xFFFFFFFF, Command.GEN_IMG))
    parser = PacketParser()
    parser.feed(b"\x00\x00" + wire[:1])
    assert parser.next_packet() is None
    parser.feed(wire[1:])
    assert parser.next_packet() == command_packet(0xFFFFFFFF, Command.GEN_IMG)


@pytest.mark.parametrize("size", [0, MAX_PAYLOAD + 1])
def test_a_packet_cannot_be_built_with_a_payload_the_wire_cannot_carry(size: int) -> None:
    with pytest.raises(ValueError, match="payload"):
        Packet(0, PacketId.DATA, bytes(size))


def test_system_parameters_decode_all_sixteen_bytes() -> None:
    raw = bytes.fromhex("0004 0009 03E8 0005 12345678 0003 000C")
    params = SystemParameters.decode(raw)
    assert params == SystemParameters(
        status_register=4,
        system_id=9,
        library_size=1000,
        security_level=5,
        address=0x12345678,
        packet_size=256,
        baud_multiplier=12,
    )
    assert params.baudrate == 115_200
    assert params.encode() == raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (bytes(15), "15 bytes, expected 16"),
        (bytes.fromhex("0000 0000 0000 0000 FFFFFFFF 0004 0006"), "packet size code 4"),
    ],
)
def test_malformed_system_parameters_are_rejected_by_name(raw: bytes, message: str) -> None:
    with pytest.raises(SensorProtocolError, match=message):
        SystemParameters.decode(raw)


def test_image_nibbles_put_the_left_pixel_high_and_scale_by_17() -> None:
    data = bytes([0x0F, 0xF0]) + bytes(IMAGE_BYTES - 2)
    pixels = unpack_image(data)
    assert pixels.shape == (IMAGE_HEIGHT, IMAGE_WIDTH)
    assert pixels[0, :4].tolist() == [0, 255, 255, 0]


@given(arrays(np.uint8, (IMAGE_HEIGHT, IMAGE_WIDTH)))
def test_packing_then_unpacking_an_image_quantises_it_to_16_levels(
    pixels: np.ndarray,
) -> None:
    restored = unpack_image(pack_image(pixels))
    assert np.array_equal(restored, quantize_image(pixels))
    assert int(np.abs(restored.astype(int) - pixels.astype(int)).max()) <= 8


@pytest.mark.parametrize("size", [0, IMAGE_BYTES - 1, IMAGE_BYTES + 1])
def test_an_image_of_the_wrong_size_is_rejected(size: int) -> None:
    with pytest.raises(SensorProtocolError, match=f"image is {size} bytes, expected 36864"):
        unpack_image(bytes(size))


def test_every_confirmation_code_has_a_message() -> None:
    assert describe_confirmation(0x02) == "0x02 (no finger on the sensor)"
    assert describe_confirmation(0x7E) == "0x7E (unknown confirmation code)"
    assert len(CONFIRMATION_MESSAGES) == 22
