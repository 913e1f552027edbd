"""The reference hub: validates, stores once, acks after storing, rejects with a reason."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import MqttTap, WaitUntil

from edge.ids import new_capture_id
from edge.minutiae import Minutia, MinutiaKind
from edge.templates import minutiae_to_iso2005
from edge.templates.convert import convert
from edge.templates.formats import TemplateFormat
from edge.wire import Ack, TemplateMessage, publish_properties
from hil.broker import MosquittoBroker
from hil.hub import ReferenceHub

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DEVICE = "kiosk-07"
ACKS = f"kiosk/{DEVICE}/acks"
TEMPLATES = f"kiosk/{DEVICE}/templates"


def iso_record(finger: int = 2) -> bytes:
    minutiae = [Minutia(40.0 + 9 * i, 60.0 + 7 * i, 20.0 * i, MinutiaKind.ENDING, 60)
                for i in range(12)]
    return minutiae_to_iso2005(minutiae, width=256, height=288, ppi=500, finger_position=finger,
                               impression_type=0, quality=70)


def template_message(**overrides: Any) -> TemplateMessage:
    fields: dict[str, Any] = {
        "capture_id": new_capture_id(),
        "device_id": DEVICE,
        "booking_reference": "BK-77",
        "finger_position": 2,
        "impression_type": 0,
        "quality": 70,
        "captured_at": datetime.now(UTC),
        "sensor": "sim:1",
        "model_version": "m1",
        "template_bytes": iso_record(),
    }
    fields.update(overrides)
    return TemplateMessage.build(**fields)


def send(tap: MqttTap, message: TemplateMessage | bytes, topic: str = TEMPLATES,
         response_topic: str | None = ACKS, correlation: bytes | None = None) -> None:
    payload = message if isinstance(message, bytes) else message.to_payload()
    if correlation is None and isinstance(message, TemplateMessage):
        correlation = message.capture_id.encode()
    tap.publish(topic, payload,
                properties=publish_properties(response_topic=response_topic,
                                              correlation_data=correlation))


@pytest.fixture
def hub(broker: MosquittoBroker, tmp_path: Path) -> Iterator[ReferenceHub]:
    with ReferenceHub(broker.host, broker.port, tmp_path / "hub.sqlite3") as running:
        yield running


@pytest.fixture
def kiosk(broker: MosquittoBroker, mqtt_tap: Callable[..., MqttTap]) -> MqttTap:
    """Plays the kiosk: publishes templates, listens on its ack topic."""
    tap: MqttTap = mqtt_tap(broker, f"kiosk/{DEVICE}/#")
    return tap


def acks_only(tap: MqttTap) -> tuple[Ack, mqtt.MQTTMessage]:
    message = tap.next_matching(lambda m: m.topic.endswith("/acks"))
    return Ack.parse(message.payload), message


def test_a_valid_template_is_stored_then_acked_accepted_with_its_correlation_data(
    hub: ReferenceHub, kiosk: MqttTap
) -> None:
    message = template_message()
    send(kiosk, message)
    ack, raw = acks_only(kiosk)
    # The ack is only sent after the row is committed.
    assert hub.count(message.capture_id) == 1
    assert (ack.capture_id, ack.status, ack.reason) == (message.capture_id, "accepted", None)
    assert raw.topic == ACKS
    assert getattr(raw.properties, "CorrelationData", None) == message.capture_id.encode()
    [stored] = hub.templates()
    assert stored.template == message.template_bytes
    assert (stored.device_id, stored.booking_reference, stored.finger_position) == (
        DEVICE, "BK-77", 2)
    assert stored.captured_at == message.captured_at
    assert stored.duplicates == 0


@pytest.mark.parametrize(
    ("wire_format", "target"),
    [("iso19794-2:2011", TemplateFormat.ISO2011), ("ansi-incits-378:2004", TemplateFormat.ANSI378)],
)
def test_templates_in_the_other_standard_formats_are_validated_by_their_own_codec(
    hub: ReferenceHub, kiosk: MqttTap, wire_format: str, target: TemplateFormat
) -> None:
    record = convert(iso_record(), target).data
    good = template_message(template_format=wire_format, template_bytes=record)
    send(kiosk, good)
    assert acks_only(kiosk)[0].status == "accepted"
    # The same bytes declared as ISO 2005 do not decode as ISO 2005: rejected, not stored.
    wrong = template_message(template_bytes=record)
    send(kiosk, wrong)
    ack = acks_only(kiosk)[0]
    assert ack.status == "rejected"
    assert hub.count(wrong.capture_id) == 0


def test_a_resent_capture_is_stored_once_and_acked_as_duplicate(
    hub: ReferenceHub, kiosk: MqttTap
) -> None:
    message = template_message()
    send(kiosk, message)
    first, _ = acks_only(kiosk)
    send(kiosk, message)
    second, _ = acks_only(kiosk)
    assert (first.status, second.status) == ("accepted", "duplicate")
    assert second.hub_received_at == first.hub_received_at
    assert hub.count(message.capture_id) == 1
    assert hub.duplicates_seen == 1
    assert hub.templates()[0].duplicates == 1


def test_de_duplication_survives_a_hub_restart(
    broker: MosquittoBroker, kiosk: MqttTap, tmp_path: Path
) -> None:
    message = template_message()
    with ReferenceHub(broker.host, broker.port, tmp_path / "hub.sqlite3"):
        send(kiosk, message)
        assert acks_only(kiosk)[0].status == "accepted"
    with ReferenceHub(broker.host, broker.port, tmp_path / "hub.sqlite3") as again:
        send(kiosk, message)
        assert acks_only(kiosk)[0].status == "duplicate"
        assert again.count(message.capture_id) == 1


@pytest.mark.parametrize(
    ("mutate", "reason_part"),
    [
        (lambda d: d.update(quality=101), "quality"),
        (lambda d: d.update(device_id="kiosk-99"), "does not match topic"),
        (lambda d: d.update(template="AAAA"), "template"),
        (lambda d: d.update(finger_position=7), "no view for finger 7"),
        (lambda d: d.update(schema="kiosk-edge.template/9"), "schema"),
    ],
)
def test_an_invalid_capture_with_a_readable_id_is_rejected_with_a_reason(
    hub: ReferenceHub,
    kiosk: MqttTap,
    mutate: Callable[[dict[str, Any]], None],
    reason_part: str,
) -> None:
    message = template_message()
    document = json.loads(message.to_payload())
    mutate(document)
    send(kiosk, json.dumps(document).encode(), correlation=message.capture_id.encode())
    ack, _ = acks_only(kiosk)
    assert ack.capture_id == message.capture_id
    assert ack.status == "rejected"
    assert ack.reason is not None and reason_part in ack.reason
    assert hub.count(message.capture_id) == 0
    assert hub.rejected == 1
    [rejection] = hub.rejections()
    assert (rejection.device_id, rejection.capture_id) == (DEVICE, message.capture_id)


def test_a_truncated_iso_record_is_rejected(hub: ReferenceHub, kiosk: MqttTap) -> None:
    message = template_message(template_bytes=iso_record()[:-1])
    send(kiosk, message)
    ack, _ = acks_only(kiosk)
    assert ack.status == "rejected" and ack.reason is not None
    assert ack.reason.startswith("template:")


def test_a_message_without_a_readable_id_is_counted_and_not_acked(
    hub: ReferenceHub, kiosk: MqttTap, wait_until: WaitUntil
) -> None:
    send(kiosk, b"\x00garbage", correlation=b"x")
    wait_until(lambda: hub.rejected == 1, what="the garbage to be counted")
    # The hub keeps serving: the next valid capture is accepted, and it is the first ack seen.
    message = template_message()
    send(kiosk, message)
    ack, _ = acks_only(kiosk)
    assert (ack.capture_id, ack.status) == (message.capture_id, "accepted")
    assert hub.rejections()[0].capture_id is None


def test_without_a_response_topic_the_ack_goes_to_the_devices_ack_topic(
    hub: ReferenceHub, kiosk: MqttTap
) -> None:
    message = template_message()
    send(kiosk, message, response_topic=None)
    ack, raw = acks_only(kiosk)
    assert raw.topic == ACKS and ack.capture_id == message.capture_id


def test_a_response_topic_outside_the_senders_tree_is_ignored(
    broker: MosquittoBroker, hub: ReferenceHub, kiosk: MqttTap,
    mqtt_tap: Callable[..., MqttTap],
) -> None:
    elsewhere = mqtt_tap(broker, "kiosk/other-kiosk/#")
    message = template_message()
    send(kiosk, message, response_topic="kiosk/other-kiosk/acks")
    ack, raw = acks_only(kiosk)
    assert raw.topic == ACKS and ack.status == "accepted"
    assert elsewhere.messages.empty()


def test_the_hub_database_is_private_to_the_owner(hub: ReferenceHub) -> None:
    assert stat.S_IMODE(hub.db_path.stat().st_mode) == 0o600


def test_the_hub_runs_as_a_command_until_terminated(
    broker: MosquittoBroker, kiosk: MqttTap, tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hil.hub", "--host", broker.host, "--port", str(broker.port),
         "--db", str(tmp_path / "cli-hub.sqlite3")],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    listening = threading.Event()

    def watch(stream: Any) -> None:
        for line in stream:
            if "hub listening" in line:
                listening.set()

    threading.Thread(target=watch, args=(process.stderr,), daemon=True).start()
    try:
        assert listening.wait(20), "hub never reported it was listening"
        message = template_message()
        send(kiosk, message)
        assert acks_only(kiosk)[0].status == "accepted"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
