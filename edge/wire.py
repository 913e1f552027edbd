"""The MQTT wire contract between kiosks and the hub: topics and versioned JSON messages.

Every message is a strict pydantic model (unknown fields rejected) carrying a ``schema`` string
that names the message kind and its version. ``parse`` turns untrusted bytes into a model or
raises a :class:`WireError` subclass; ``to_payload`` gives the bytes to publish. The JSON
Schemas under ``docs/schemas`` are generated from these models (``python -m edge.wire --export``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import pydantic_core
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from edge.ids import UUID7_PATTERN

MAX_PAYLOAD_BYTES = 64 * 1024
"""Anything larger is rejected before it is parsed."""

MAX_TEMPLATE_BYTES = 32 * 1024
"""An ISO/IEC 19794-2 record with one view of 255 minutiae is under 2 KiB; this leaves room for
extended data without letting a message carry arbitrary blobs."""

MAX_IMAGE_BYTES = 24 * 1024
"""A 500 ppi single-finger WSQ image at 0.75 bpp (256 x 288 from the kiosk's sensor is about
6 KiB); the limit keeps a message with its template under :data:`MAX_PAYLOAD_BYTES`."""

TemplateFormat = Literal["iso19794-2:2005", "iso19794-2:2011", "ansi-incits-378:2004"]
TEMPLATE_FORMAT: TemplateFormat = "iso19794-2:2005"

# No C0/C1 control characters, DEL or Unicode line/paragraph separators (they break logs, file
# names and the printed forms these strings end up on), and no leading or trailing whitespace.
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_TEXT = rf"^[^\s{_CONTROL}]([^{_CONTROL}]*[^\s{_CONTROL}])?$"
_DEVICE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class WireError(ValueError):
    """A payload is not a valid message of the expected kind; ``message_kind`` names that kind."""

    def __init__(self, message_kind: str, detail: str) -> None:
        super().__init__(f"{message_kind}: {detail}")
        self.message_kind = message_kind
        self.detail = detail


class PayloadTooLargeError(WireError):
    """The payload exceeds :data:`MAX_PAYLOAD_BYTES`."""


class NotJsonError(WireError):
    """The payload is not UTF-8 JSON, or its top level is not an object."""


class SchemaMismatchError(WireError):
    """The ``schema`` field is missing, of another message kind, or an unsupported version."""


class FieldError(WireError):
    """One or more fields are missing, unknown or invalid; ``fields`` lists their paths."""

    def __init__(self, message_kind: str, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__(message_kind, "; ".join(f"{where}: {msg}" for where, msg in problems))
        self.fields = tuple(where for where, _ in problems)


def _utc(value: datetime) -> datetime:
    if value.utcoffset() != timedelta(0):
        raise ValueError("must be in UTC (offset Z or +00:00)")
    return value


def _canonical_base64(value: str) -> str:
    return _bounded_base64(value, MAX_TEMPLATE_BYTES)


def _canonical_base64_image(value: str) -> str:
    return _bounded_base64(value, MAX_IMAGE_BYTES)


def _bounded_base64(value: str, limit: int) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise ValueError("not canonical base64 (padding or trailing bits)")
    if not raw:
        raise ValueError("decodes to no bytes")
    if len(raw) > limit:
        raise ValueError(f"decodes to more than {limit} bytes")
    return value


UtcDatetime = Annotated[
    AwareDatetime, AfterValidator(_utc), Field(description="RFC 3339, in UTC (Z or +00:00)")
]
CaptureId = Annotated[str, Field(pattern=UUID7_PATTERN, description="UUIDv7, canonical text")]
DeviceId = Annotated[str, Field(pattern=_DEVICE_ID)]
BookingReference = Annotated[str, Field(min_length=1, max_length=64, pattern=_TEXT)]
ShortText = Annotated[str, Field(min_length=1, max_length=128, pattern=_TEXT)]
FingerCode = Annotated[int, Field(ge=1, le=10)]
ImpressionType = Annotated[int, Field(ge=0, le=9)]
Base64Template = Annotated[
    str,
    Field(
        min_length=4,
        max_length=4 * -(-MAX_TEMPLATE_BYTES // 3),
        description="the minutiae record in template_format, canonical base64",
        json_schema_extra={"contentEncoding": "base64"},
    ),
    AfterValidator(_canonical_base64),
]
Base64Wsq = Annotated[
    str,
    Field(
        min_length=4,
        max_length=4 * -(-MAX_IMAGE_BYTES // 3),
        description="the captured image as WSQ at 500 ppi, canonical base64",
        json_schema_extra={"contentEncoding": "base64"},
    ),
    AfterValidator(_canonical_base64_image),
]


def _require_schema_field(schema: dict[str, Any]) -> None:
    # The field has a default so code can build messages without repeating it, but on the wire
    # it is mandatory: parse() refuses a payload without it.
    required = schema.setdefault("required", [])
    if "schema" not in required:
        required.insert(0, "schema")


class WireMessage(BaseModel):
    """Base of all wire messages."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        populate_by_name=True,
        json_schema_extra=_require_schema_field,
    )

    SCHEMA: ClassVar[str]
    KIND: ClassVar[str]

    @classmethod
    def parse(cls, payload: bytes | bytearray) -> Self:
        """Validate untrusted bytes; raise a WireError subclass naming what is wrong."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLargeError(cls.KIND, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
        try:
            document = pydantic_core.from_json(payload, allow_inf_nan=False)
        except ValueError as exc:
            raise NotJsonError(cls.KIND, f"not valid JSON ({_first_line(exc)})") from None
        if not isinstance(document, dict):
            raise NotJsonError(cls.KIND, "top level is not a JSON object")
        schema = document.get("schema")
        if schema != cls.SCHEMA:
            shown = repr(schema) if isinstance(schema, str) and len(schema) <= 64 else "invalid"
            if "schema" not in document:
                shown = "missing"
            raise SchemaMismatchError(cls.KIND, f"schema is {shown}, expected {cls.SCHEMA!r}")
        try:
            return cls.model_validate_json(payload, strict=True)
        except ValidationError as exc:
            problems = [
                (".".join(str(p) for p in err["loc"]) or "(message)", err["msg"])
                for err in exc.errors(include_url=False, include_input=False)
            ]
            raise FieldError(cls.KIND, problems) from None

    def to_payload(self) -> bytes:
        """Compact UTF-8 JSON, field names as on the wire."""
        return self.model_dump_json(by_alias=True).encode("utf-8")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


class TemplateMessage(WireMessage):
    """One finger's minutiae template, kiosk -> hub on ``{prefix}/{device}/templates``."""

    SCHEMA: ClassVar[str] = "kiosk-edge.template/1"
    KIND: ClassVar[str] = "TemplateMessage"

    schema_id: Literal["kiosk-edge.template/1"] = Field(
        default="kiosk-edge.template/1", alias="schema"
    )
    capture_id: CaptureId
    device_id: DeviceId
    booking_reference: BookingReference
    finger_position: Annotated[int, Field(ge=0, le=10, description="ISO finger code, 0 unknown")]
    impression_type: ImpressionType
    quality: Annotated[int, Field(ge=0, le=100)]
    captured_at: UtcDatetime
    sensor: ShortText
    model_version: ShortText
    template_format: TemplateFormat = TEMPLATE_FORMAT
    template: Base64Template
    image_wsq: Base64Wsq | None = None

    @classmethod
    def build(cls, *, template_bytes: bytes, **fields: Any) -> TemplateMessage:
        """Build a message from raw record bytes (base64-encoded here)."""
        return cls(template=base64.b64encode(template_bytes).decode("ascii"), **fields)

    @property
    def template_bytes(self) -> bytes:
        return base64.b64decode(self.template, validate=True)

    @property
    def image_wsq_bytes(self) -> bytes | None:
        """The WSQ image when the kiosk is configured to send it."""
        return None if self.image_wsq is None else base64.b64decode(self.image_wsq, validate=True)


AckStatus = Literal["accepted", "duplicate", "rejected"]


class Ack(WireMessage):
    """The hub's answer to one TemplateMessage, hub -> kiosk on ``{prefix}/{device}/acks``."""

    SCHEMA: ClassVar[str] = "kiosk-edge.ack/1"
    KIND: ClassVar[str] = "Ack"

    schema_id: Literal["kiosk-edge.ack/1"] = Field(default="kiosk-edge.ack/1", alias="schema")
    capture_id: CaptureId
    status: AckStatus
    reason: Annotated[str, Field(min_length=1, max_length=256, pattern=_TEXT)] | None = None
    hub_received_at: UtcDatetime

    @model_validator(mode="after")
    def _reason_only_for_rejected(self) -> Self:
        if (self.status == "rejected") != (self.reason is not None):
            raise ValueError("reason is required for 'rejected' and only allowed there")
        return self


DeviceState = Literal["online", "offline"]
SensorState = Literal["ok", "offline", "error"]


class DeviceStatus(WireMessage):
    """A kiosk's retained status on ``{prefix}/{device}/status``; also its MQTT last will."""

    SCHEMA: ClassVar[str] = "kiosk-edge.status/1"
    KIND: ClassVar[str] = "DeviceStatus"

    schema_id: Literal["kiosk-edge.status/1"] = Field(
        default="kiosk-edge.status/1", alias="schema"
    )
    device_id: DeviceId
    state: DeviceState
    sensor: SensorState
    outbox_pending: Annotated[int, Field(ge=0, description="captures not yet acked by the hub")]
    software_version: ShortText
    model_version: ShortText
    updated_at: UtcDatetime


class BookingRequest(WireMessage):
    """Fingers to capture, in order, operator/hub -> kiosk on ``{prefix}/{device}/booking``."""

    SCHEMA: ClassVar[str] = "kiosk-edge.booking/1"
    KIND: ClassVar[str] = "BookingRequest"

    schema_id: Literal["kiosk-edge.booking/1"] = Field(
        default="kiosk-edge.booking/1", alias="schema"
    )
    booking_reference: BookingReference
    finger_positions: Annotated[
        list[FingerCode],
        Field(min_length=1, max_length=10, description="capture order; unique ISO codes 1..10"),
    ]
    impression_type: ImpressionType = 0

    @model_validator(mode="after")
    def _unique_fingers(self) -> Self:
        if len(set(self.finger_positions)) != len(self.finger_positions):
            raise ValueError("finger_positions must not repeat a finger")
        return self


MESSAGE_TYPES: tuple[type[WireMessage], ...] = (TemplateMessage, Ack, DeviceStatus, BookingRequest)

TopicKind = Literal["templates", "acks", "status", "booking"]
TOPIC_KINDS: tuple[TopicKind, ...] = ("templates", "acks", "status", "booking")


@dataclass(frozen=True)
class Topics:
    """The four topics of one device under ``prefix``."""

    prefix: str
    device_id: str

    def _topic(self, kind: TopicKind) -> str:
        return f"{self.prefix}/{self.device_id}/{kind}"

    @property
    def templates(self) -> str:
        return self._topic("templates")

    @property
    def acks(self) -> str:
        return self._topic("acks")

    @property
    def status(self) -> str:
        return self._topic("status")

    @property
    def booking(self) -> str:
        return self._topic("booking")


def all_devices_filter(prefix: str, kind: TopicKind) -> str:
    """Subscription filter for one topic kind of every device, e.g. ``kiosk/+/templates``."""
    return f"{prefix}/+/{kind}"


def split_topic(prefix: str, topic: str) -> tuple[str, TopicKind] | None:
    """``(device_id, kind)`` for a topic of this contract, None for anything else."""
    parts = topic.split("/")
    prefix_parts = prefix.split("/")
    if len(parts) != len(prefix_parts) + 2 or parts[: len(prefix_parts)] != prefix_parts:
        return None
    device_id, kind = parts[-2], parts[-1]
    for known in TOPIC_KINDS:
        if kind == known and device_id:
            return device_id, known
    return None


CONTENT_TYPE = "application/json"


def publish_properties(
    response_topic: str | None = None, correlation_data: bytes | None = None
) -> Properties:
    """MQTT v5 PUBLISH properties every message of this contract carries (UTF-8 JSON)."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ContentType = CONTENT_TYPE
    properties.PayloadFormatIndicator = 1
    if response_topic is not None:
        properties.ResponseTopic = response_topic
    if correlation_data is not None:
        properties.CorrelationData = correlation_data
    return properties


def will_properties() -> Properties:
    """MQTT v5 properties of a last-will message (a retained offline DeviceStatus)."""
    properties = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
    properties.ContentType = CONTENT_TYPE
    properties.PayloadFormatIndicator = 1
    return properties


def session_properties(session_expiry_s: int) -> Properties:
    """CONNECT properties for a persistent session that outlives a disconnect."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = session_expiry_s
    return properties


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema (validation mode) for every message type."""
    schemas: dict[str, dict[str, Any]] = {}
    for model in MESSAGE_TYPES:
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schemas[f"{model.SCHEMA.split('.')[1].split('/')[0]}.schema.json"] = schema
    return schemas


def render_schema(schema: dict[str, Any]) -> str:
    """The committed text form of a schema (stable key order, trailing newline)."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_schemas(directory: Path) -> list[Path]:
    """Write every message's JSON Schema into ``directory``; return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(render_schema(schema), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.wire", description=__doc__)
    parser.add_argument("--export", type=Path, required=True, metavar="DIR",
                        help="write the JSON Schemas of all wire messages into DIR")
    args = parser.parse_args(argv)
    for path in export_schemas(args.export):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
