"""The wire contract: messages round-trip, anything malformed is a WireError naming the problem."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ids import new_capture_id
from edge.wire import (
    MAX_PAYLOAD_BYTES,
    MAX_TEMPLATE_BYTES,
    Ack,
    BookingRequest,
    DeviceStatus,
    FieldError,
    NotJsonError,
    PayloadTooLargeError,
    SchemaMismatchError,
    TemplateMessage,
    Topics,
    WireError,
    WireMessage,
    all_devices_filter,
    json_schemas,
    main,
    render_schema,
    split_topic,
)

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"
NOW = datetime(2025, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)


def template_message(**overrides: Any) -> TemplateMessage:
    fields: dict[str, Any] = {
        "capture_id": new_capture_id(),
        "device_id": "kiosk-01",
        "booking_reference": "BK-2025-000123",
        "finger_position": 2,
        "impression_type": 0,
        "quality": 71,
        "captured_at": NOW,
        "sensor": "zfm:r307:ffffffff",
        "model_version": "minutiae-net 1.0",
        "template_bytes": b"FMR\x00 20\x00" + bytes(range(40)),
    }
    fields.update(overrides)
    return TemplateMessage.build(**fields)


def as_dict(message: WireMessage) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(message.to_payload())
    return result


def payload(document: object) -> bytes:
    return json.dumps(document).encode()


# --- strategies -----------------------------------------------------------------------------

uuid7s = st.builds(
    lambda ms, rand: str(uuid.UUID(int=(ms << 80) | (7 << 76) | ((rand >> 62) << 64)
                                    | (0b10 << 62) | (rand & ((1 << 62) - 1)))),
    st.integers(0, (1 << 48) - 1),
    st.integers(0, (1 << 74) - 1),
)
texts = (
    st.text(st.characters(whitelist_categories=("L", "N", "P", "Zs")), min_size=1, max_size=64)
    .map(str.strip)
    .filter(bool)
)
device_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True)
utc_times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
)

template_messages = st.builds(
    TemplateMessage.build,
    template_bytes=st.binary(min_size=1, max_size=2048),
    capture_id=uuid7s,
    device_id=device_ids,
    booking_reference=texts,
    finger_position=st.integers(0, 10),
    impression_type=st.integers(0, 9),
    quality=st.integers(0, 100),
    captured_at=utc_times,
    sensor=texts,
    model_version=texts,
)
acks = st.one_of(
    st.builds(Ack, capture_id=uuid7s, status=st.sampled_from(["accepted", "duplicate"]),
              hub_received_at=utc_times),
    st.builds(Ack, capture_id=uuid7s, status=st.just("rejected"), reason=texts,
              hub_received_at=utc_times),
)
statuses = st.builds(
    DeviceStatus,
    device_id=device_ids,
    state=st.sampled_from(["online", "offline"]),
    sensor=st.sampled_from(["ok", "offline", "error"]),
    outbox_pending=st.integers(0, 10**9),
    software_version=texts,
    model_version=texts,
    updated_at=utc_times,
)
bookings = st.builds(
    BookingRequest,
    booking_reference=texts,
    finger_positions=st.lists(st.integers(1, 10), min_size=1, max_size=10, unique=True),
    impression_type=st.integers(0, 9),
)
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
MESSAGE_TYPES: list[type[WireMessage]] = [TemplateMessage, Ack, DeviceStatus, BookingRequest]


# --- round trips ----------------------------------------------------------------------------


@given(st.one_of(template_messages, acks, statuses, bookings))
def test_every_valid_message_survives_a_round_trip(message: WireMessage) -> None:
    assert type(message).parse(message.to_payload()) == message


def test_the_template_travels_as_base64_of_the_record_bytes() -> None:
    record = b"FMR\x00 20\x00\x00\x00\x00\x1c" + b"\x01" * 18
    message = template_message(template_bytes=record)
    assert as_dict(message)["template"] == base64.b64encode(record).decode()
    assert TemplateMessage.parse(message.to_payload()).template_bytes == record


def test_the_payload_names_its_schema_and_sends_times_in_utc() -> None:
    document = as_dict(template_message())
    assert document["schema"] == "kiosk-edge.template/1"
    assert document["captured_at"] == "2025-06-01T12:30:15.123456Z"
    assert document["template_format"] == "iso19794-2:2005"


# --- malformed input: always a WireError, never anything else --------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_wire_errors(data: bytes) -> None:
    for model in MESSAGE_TYPES:
        with contextlib.suppress(WireError):
            model.parse(data)


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_raises_only_wire_errors(document: object) -> None:
    for model in MESSAGE_TYPES:
        with pytest.raises(WireError):
            model.parse(payload(document))


@settings(max_examples=300)
@given(template_messages, st.data())
def test_a_corrupted_field_is_reported_by_name(
    message: TemplateMessage, data: st.DataObject
) -> None:
    document = as_dict(message)
    key = data.draw(st.sampled_from(sorted(set(document) - {"schema"})))
    document[key] = data.draw(json_values)
    # The drawn value may happen to be valid; if it is not, the error must name the field.
    try:
        TemplateMessage.parse(payload(document))
    except FieldError as exc:
        assert exc.fields == (key,)


@given(template_messages, st.data())
def test_a_missing_field_is_reported_by_name(message: TemplateMessage, data: st.DataObject) -> None:
    document = as_dict(message)
    required = sorted(set(document) - {"schema", "template_format", "image_wsq"})
    key = data.draw(st.sampled_from(required))
    del document[key]
    with pytest.raises(FieldError) as caught:
        TemplateMessage.parse(payload(document))
    assert caught.value.fields == (key,)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", NotJsonError),
        (b"\xff\xfe{}", NotJsonError),
        (b'{"schema": "kiosk-edge.template/1",', NotJsonError),
        (b"[1, 2]", NotJsonError),
        (b"[" * 100_000, PayloadTooLargeError),
        (b"[" * 5_000, NotJsonError),
        (b'{"schema": NaN}', NotJsonError),
        (b"{}", SchemaMismatchError),
        (b'{"schema": "kiosk-edge.template/2"}', SchemaMismatchError),
        (b'{"schema": "kiosk-edge.ack/1"}', SchemaMismatchError),
        (b'{"schema": ["kiosk-edge.template/1"]}', SchemaMismatchError),
    ],
)
def test_malformed_payloads_raise_the_specific_error(data: bytes, error: type[WireError]) -> None:
    with pytest.raises(error) as caught:
        TemplateMessage.parse(data)
    assert caught.value.message_kind == "TemplateMessage"


def test_a_payload_over_the_size_limit_is_refused_before_parsing() -> None:
    document = as_dict(template_message())
    document["sensor"] = "x" * MAX_PAYLOAD_BYTES
    with pytest.raises(PayloadTooLargeError):
        TemplateMessage.parse(payload(document))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("capture_id", str(uuid.uuid4())),
        ("capture_id", new_capture_id().upper()),
        ("device_id", "kiosk/01"),
        ("device_id", "+"),
        ("booking_reference", ""),
        ("booking_reference", "BK\n1"),
        ("booking_reference", " BK-1"),
        ("booking_reference", "B" * 65),
        ("finger_position", 11),
        ("finger_position", -1),
        ("finger_position", "2"),
        ("finger_position", 2.0),
        ("finger_position", True),
        ("impression_type", 10),
        ("quality", 101),
        ("captured_at", "2025-06-01T12:30:15"),
        ("captured_at", "2025-06-01T14:30:15+02:00"),
        ("captured_at", "yesterday"),
        ("sensor", "zfm\x00"),
        ("template_format", "ansi378"),
        ("template", "not base64!"),
        ("template", "Rk1SACAyMAA"),  # missing padding
        ("template", "Rk1SACAyMAB="),  # non-zero trailing bits
        ("template", ""),
        ("template", base64.b64encode(b"x" * (MAX_TEMPLATE_BYTES + 1)).decode()),
        ("unexpected", 1),
    ],
)
def test_each_invalid_field_value_is_a_field_error_naming_it(key: str, value: object) -> None:
    document = as_dict(template_message())
    document[key] = value
    with pytest.raises(FieldError) as caught:
        TemplateMessage.parse(payload(document))
    assert caught.value.fields == (key,)


def test_field_errors_do_not_echo_the_offending_value() -> None:
    document = as_dict(template_message())
    document["booking_reference"] = "SECRET-NAME\n"
    with pytest.raises(FieldError) as caught:
        TemplateMessage.parse(payload(document))
    assert "SECRET-NAME" not in str(caught.value)


def test_building_a_message_in_code_requires_utc_times() -> None:
    with pytest.raises(ValueError, match="UTC"):
        template_message(captured_at=NOW.astimezone(timezone(timedelta(hours=2))))


def test_a_rejected_ack_needs_a_reason_and_only_it_has_one() -> None:
    base = {"schema": "kiosk-edge.ack/1", "capture_id": new_capture_id(),
            "hub_received_at": "2025-06-01T12:30:15Z"}
    Ack.parse(payload({**base, "status": "rejected", "reason": "template: bad magic"}))
    for document in ({**base, "status": "rejected"},
                     {**base, "status": "accepted", "reason": "fine"}):
        with pytest.raises(FieldError):
            Ack.parse(payload(document))


@pytest.mark.parametrize("fingers", [[], [1, 1], [0], [11], [*range(1, 11), 1]])
def test_a_booking_needs_distinct_fingers_1_to_10(fingers: list[int]) -> None:
    document = {"schema": "kiosk-edge.booking/1", "booking_reference": "BK-1",
                "finger_positions": fingers}
    with pytest.raises(FieldError):
        BookingRequest.parse(payload(document))


def test_a_booking_defaults_to_live_plain_impressions() -> None:
    document = {"schema": "kiosk-edge.booking/1", "booking_reference": "BK-1",
                "finger_positions": [2, 7, 1]}
    request = BookingRequest.parse(payload(document))
    assert request.impression_type == 0
    assert request.finger_positions == [2, 7, 1]


# --- topics ---------------------------------------------------------------------------------


def test_each_device_has_four_topics_under_the_prefix() -> None:
    topics = Topics("kiosk", "k-7")
    assert (topics.templates, topics.acks, topics.status, topics.booking) == (
        "kiosk/k-7/templates", "kiosk/k-7/acks", "kiosk/k-7/status", "kiosk/k-7/booking")
    assert all_devices_filter("site/a", "templates") == "site/a/+/templates"


@pytest.mark.parametrize(
    ("prefix", "topic", "expected"),
    [
        ("kiosk", "kiosk/k-7/templates", ("k-7", "templates")),
        ("site/a", "site/a/k-7/acks", ("k-7", "acks")),
        ("kiosk", "kiosk/k-7/other", None),
        ("kiosk", "kiosk//templates", None),
        ("kiosk", "other/k-7/templates", None),
        ("kiosk", "kiosk/k-7/templates/extra", None),
    ],
)
def test_topics_are_split_into_device_and_kind(
    prefix: str, topic: str, expected: tuple[str, str] | None
) -> None:
    assert split_topic(prefix, topic) == expected


# --- JSON Schemas ---------------------------------------------------------------------------


def test_the_committed_json_schemas_match_the_models() -> None:
    generated = json_schemas()
    committed = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert committed == set(generated)
    for name, schema in generated.items():
        assert (SCHEMA_DIR / name).read_text(encoding="utf-8") == render_schema(schema), (
            f"docs/schemas/{name} is stale: run python -m edge.wire --export docs/schemas"
        )


def test_the_schemas_require_the_schema_field_and_forbid_extra_fields() -> None:
    for schema in json_schemas().values():
        assert schema["required"][0] == "schema"
        assert schema["additionalProperties"] is False


def test_the_export_command_writes_one_file_per_message(tmp_path: Path) -> None:
    assert main(["--export", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(json_schemas())
