"""The simulated sensor's USB side without umockdev: usbdevfs layout, descriptors, URB flow."""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import SensorConfig
from firmware_bridge.zfm_protocol import (
    BROADCAST_ADDRESS,
    Command,
    PacketParser,
    command_packet,
    encode_packet,
)
from hil.simulator.device import ZfmDevice
from hil.simulator.faults import Garbage, Stall
from hil.simulator.script import FingerScript
from hil.usb import usbdevfs
from hil.usb.descriptors import IN_ENDPOINT, OUT_ENDPOINT, UsbIdentity
from hil.usb.link import Transfer, UsbLink
from hil.usb.wire import decode_fault, encode_fault

IDENTITY = UsbIdentity(0x1209, 0x0001, "SIM0001")


def test_request_numbers_match_the_kernel_header() -> None:
    # Values of the <linux/usbdevice_fs.h> macros on x86-64 and arm64.
    assert usbdevfs.SUBMITURB == 0x8038550A
    assert usbdevfs.DISCARDURB == 0x550B
    assert usbdevfs.REAPURBNDELAY == 0x4008550D
    assert usbdevfs.CLAIMINTERFACE == 0x8004550F
    assert usbdevfs.RELEASEINTERFACE == 0x80045510
    assert usbdevfs.SETCONFIGURATION == 0x80045505
    assert usbdevfs.GETDRIVER == 0x41045508
    assert usbdevfs.CLEAR_HALT == 0x80045515
    assert usbdevfs.GET_CAPABILITIES == 0x8004551A
    assert usbdevfs.URB_FORMAT.size == 56


@given(
    kind=st.integers(0, 3),
    endpoint=st.integers(0, 255),
    status=st.integers(-(2**31), 2**31 - 1),
    buffer=st.integers(0, 2**64 - 1),
    length=st.integers(0, 2**31 - 1),
    actual=st.integers(0, 2**31 - 1),
    context=st.integers(0, 2**64 - 1),
)
def test_urb_survives_encoding(
    kind: int, endpoint: int, status: int, buffer: int, length: int, actual: int, context: int
) -> None:
    urb = usbdevfs.Urb(kind, endpoint, status, 0, buffer, length, actual, context)
    assert usbdevfs.Urb.decode(urb.encode()) == urb


def test_a_short_urb_is_rejected_naming_the_size() -> None:
    with pytest.raises(ValueError, match="56 bytes, got 10"):
        usbdevfs.Urb.decode(bytes(10))


def test_descriptors_declare_a_vendor_interface_with_two_bulk_endpoints() -> None:
    raw = IDENTITY.descriptors()
    vendor, product = struct.unpack_from("<HH", raw, 8)
    assert (vendor, product) == (0x1209, 0x0001)
    total = struct.unpack_from("<H", raw, 18 + 2)[0]
    assert len(raw) == 18 + total
    interface = raw[18 + 9 : 18 + 18]
    assert interface[1] == 4 and interface[4] == 2 and interface[5] == 0xFF
    endpoints = [raw[18 + 18 + 7 * i : 18 + 25 + 7 * i] for i in range(2)]
    assert {(e[2], e[3]) for e in endpoints} == {(OUT_ENDPOINT, 2), (IN_ENDPOINT, 2)}


def test_string_descriptors_carry_the_serial_number_in_utf16() -> None:
    assert IDENTITY.string(0) == bytes((4, 3, 0x09, 0x04))
    serial = IDENTITY.string(3)
    assert serial is not None and serial[2:].decode("utf-16-le") == "SIM0001"
    assert IDENTITY.string(9) is None


def bulk(endpoint: int, length: int, address: int) -> Transfer[int]:
    return Transfer(usbdevfs.Urb(usbdevfs.URB_TYPE_BULK, endpoint, 0, 0, 0, length, 0, 0), address)


def link(device: ZfmDevice | None = None) -> UsbLink[int]:
    made: UsbLink[int] = UsbLink(device or ZfmDevice(FingerScript()), IDENTITY)
    made.connect()
    return made


def gen_img() -> bytes:
    return encode_packet(command_packet(BROADCAST_ADDRESS, Command.GEN_IMG))


def test_a_command_sent_out_is_answered_on_the_in_endpoint() -> None:
    usb = link()
    assert usb.submit(bulk(IN_ENDPOINT, 512, 1), bytes) == 0
    assert usb.submit(bulk(OUT_ENDPOINT, 12, 2), gen_img) == 0
    out = usb.reap()
    assert isinstance(out, Transfer) and out.handle == 2 and out.urb.actual_length == 12
    reply = usb.reap()
    assert isinstance(reply, Transfer) and reply.handle == 1 and reply.urb.status == 0
    parser = PacketParser()
    parser.feed(reply.data)
    packet = parser.next_packet()
    assert packet is not None and packet.payload[0] == 0x02  # no finger
    assert usb.reap() == errno.EAGAIN


def test_an_in_transfer_waits_for_data_and_can_be_discarded() -> None:
    usb = link()
    usb.submit(bulk(IN_ENDPOINT, 512, 7), bytes)
    assert usb.reap() == errno.EAGAIN
    assert usb.discard(7, lambda handle: handle) == 0
    cancelled = usb.reap()
    assert isinstance(cancelled, Transfer) and cancelled.urb.status == -errno.ENOENT
    assert usb.discard(7, lambda handle: handle) == errno.EINVAL


def test_unplug_ends_transfers_in_flight_and_fails_everything_after() -> None:
    usb = link()
    usb.submit(bulk(IN_ENDPOINT, 512, 1), bytes)
    usb.disconnect()
    ended = usb.reap()
    assert isinstance(ended, Transfer) and ended.urb.status == -errno.ESHUTDOWN
    assert usb.reap() == errno.ENODEV
    assert usb.submit(bulk(OUT_ENDPOINT, 12, 2), gen_img) == errno.ENODEV


def test_a_replugged_device_is_a_new_generation() -> None:
    usb: UsbLink[int] = UsbLink(ZfmDevice(FingerScript()), IDENTITY)
    first = usb.connect()
    usb.disconnect()
    second = usb.connect()
    assert not usb.is_current(first) and usb.is_current(second)
    assert usb.state.plug_count == 2


def test_a_stalled_endpoint_stays_halted_until_cleared() -> None:
    usb = link()
    usb.stall_in(1)
    for handle in (1, 2):
        usb.submit(bulk(IN_ENDPOINT, 512, handle), bytes)
        stalled = usb.reap()
        assert isinstance(stalled, Transfer) and stalled.urb.status == -errno.EPIPE
    assert usb.clear_halt(IN_ENDPOINT) == 0
    usb.submit(bulk(IN_ENDPOINT, 512, 3), bytes)
    assert usb.reap() == errno.EAGAIN


def test_a_throttled_device_releases_its_reply_as_time_passes() -> None:
    now = [100.0]
    usb: UsbLink[int] = UsbLink(ZfmDevice(FingerScript()), IDENTITY, clock=lambda: now[0])
    usb.connect()
    usb.throttle(1000.0)  # 12-byte reply: 12 ms
    usb.submit(bulk(OUT_ENDPOINT, 12, 1), gen_img)
    usb.reap()
    usb.submit(bulk(IN_ENDPOINT, 512, 2), bytes)
    assert usb.reap() == errno.EAGAIN
    now[0] += 0.011
    partial = usb.reap()
    assert isinstance(partial, Transfer) and 0 < partial.urb.actual_length < 12


def test_get_descriptor_for_the_serial_number_is_answered_on_endpoint_zero() -> None:
    usb = link()
    setup = struct.pack("<BBHHH", 0x80, 6, (3 << 8) | 3, 0x0409, 255)
    control = Transfer(
        usbdevfs.Urb(usbdevfs.URB_TYPE_CONTROL, 0, 0, 0, 0, 8 + 255, 0, 0), 1
    )
    assert usb.submit(control, lambda: setup) == 0
    answered = usb.reap()
    assert isinstance(answered, Transfer) and answered.data == IDENTITY.string(3)


def test_an_unknown_control_request_stalls() -> None:
    usb = link()
    setup = struct.pack("<BBHHH", 0x40, 0x42, 0, 0, 0)
    control = Transfer(usbdevfs.Urb(usbdevfs.URB_TYPE_CONTROL, 0, 0, 0, 0, 8, 0, 0), 1)
    usb.submit(control, lambda: setup)
    stalled = usb.reap()
    assert isinstance(stalled, Transfer) and stalled.urb.status == -errno.EPIPE


@pytest.mark.parametrize(
    "fault", [Stall(command=Command.GEN_IMG, times=None), Garbage(data=b"\x01\xef")]
)
def test_faults_survive_the_trip_to_the_simulator_process(fault: Stall | Garbage) -> None:
    assert decode_fault(encode_fault(fault)) == fault


def test_usb_sensor_config_needs_ids_and_passes_only_usb_settings() -> None:
    with pytest.raises(ValueError, match="vendor_id and product_id"):
        SensorConfig(kind="usb")
    config = SensorConfig(kind="usb", vendor_id=0x1209, product_id=1, serial_number="A1")
    settings = config.settings()
    assert settings["vendor_id"] == 0x1209 and settings["serial_number"] == "A1"
    assert "port" not in settings and "baudrate" not in settings
    assert "vendor_id" not in SensorConfig().settings()


def test_without_the_preload_library_the_usb_tests_are_told_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hil.usb import testbed

    monkeypatch.setattr(testbed, "_preload_exists", lambda: False)
    reason = testbed.unavailable_reason()
    assert reason is not None and "Debian package umockdev" in reason


def test_a_usb_sensor_is_described_by_its_id_not_the_unused_tty() -> None:
    config = SensorConfig(kind="usb", vendor_id=0x1209, product_id=1, serial_number="A1")
    assert config.target == "usb 1209:0001 serial A1"
    assert SensorConfig().target == "serial /dev/kiosk-sensor"


def test_a_control_transfer_too_short_for_its_setup_packet_is_refused() -> None:
    usb = link()
    control = Transfer(usbdevfs.Urb(usbdevfs.URB_TYPE_CONTROL, 0, 0, 0, 0, 4, 0, 0), 1)
    assert usb.submit(control, lambda: b"\x80\x06\x00\x03") == errno.EINVAL
    assert usb.reap() == errno.EAGAIN
