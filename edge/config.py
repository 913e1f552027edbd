"""Daemon configuration: a TOML file (default /etc/kiosk-edge/config.toml) plus KIOSK_* variables.

Environment variables override the file, nested with a double underscore:
``KIOSK_MQTT__HOST=hub.local`` sets ``[mqtt] host``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG_PATH = Path("/etc/kiosk-edge/config.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SensorConfig(_Section):
    """Which sensor to open and how; ``kind`` picks the implementation.

    ``port`` and ``baudrate`` apply to "serial"; ``vendor_id``, ``product_id`` and
    ``serial_number`` (to pick one of several identical sensors) to "usb".
    """

    kind: Literal["serial", "usb"] = "serial"
    port: str = "/dev/kiosk-sensor"
    baudrate: Annotated[int, Field(ge=9600, le=921600)] = 57600
    vendor_id: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    product_id: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    serial_number: str | None = None
    address: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 0xFFFFFFFF
    password: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 0
    packet_size: Literal[32, 64, 128, 256] = 128
    timeout: Annotated[float, Field(gt=0, le=60)] = 2.0
    ppi: Annotated[float, Field(gt=100, le=2000)] = 500.0

    @model_validator(mode="after")
    def _usb_needs_ids(self) -> SensorConfig:
        if self.kind == "usb" and (self.vendor_id is None or self.product_id is None):
            raise ValueError("a usb sensor needs vendor_id and product_id")
        return self

    @property
    def target(self) -> str:
        """Where the sensor is looked for, for messages: the tty, or the USB id."""
        if self.kind == "usb":
            assert self.vendor_id is not None and self.product_id is not None
            serial = f" serial {self.serial_number}" if self.serial_number else ""
            return f"usb {self.vendor_id:04x}:{self.product_id:04x}{serial}"
        return f"serial {self.port}"

    def settings(self) -> dict[str, Any]:
        """Keyword arguments for :func:`firmware_bridge.make_sensor`."""
        if self.kind == "usb":
            return self.model_dump(exclude={"kind", "port", "baudrate"})
        return self.model_dump(exclude={"kind", "vendor_id", "product_id", "serial_number"})


class TlsConfig(_Section):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttConfig(_Section):
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: str | None = None
    tls: TlsConfig | None = None
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    session_expiry: Annotated[int, Field(ge=0)] = 7 * 24 * 3600
    topic_prefix: str = "kiosk"
    max_inflight: Annotated[int, Field(ge=1, le=1000)] = 20
    reconnect_min_delay: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_delay: Annotated[float, Field(gt=0)] = 60.0
    ack_timeout: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("topic_prefix")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if not value or any(c in value for c in "+#") or value.startswith("/"):
            raise ValueError("must be a plain topic level without wildcards or a leading '/'")
        return value.rstrip("/")


class QualityConfig(_Section):
    min_foreground_fraction: Annotated[float, Field(ge=0, le=1)] = 0.25
    min_contrast: Annotated[float, Field(ge=0, le=255)] = 20.0
    # Orientation coherence; real FVC2002 prints go down to about 0.17, noise is below 0.1.
    min_ridge_clarity: Annotated[float, Field(ge=0, le=1)] = 0.15
    min_minutiae: Annotated[int, Field(ge=0)] = 8


class ModelConfig(_Section):
    """Which extraction model runs: ``precision`` "int8" picks the quantised model the
    manifest lists beside the fp32 one (faster on CPU, within the measured accuracy of fp32)."""

    directory: Path | None = None  # None: the models shipped with the package
    threads: Annotated[int, Field(ge=1, le=64)] = 1
    precision: Literal["fp32", "int8"] = "fp32"


class CaptureConfig(_Section):
    """How captures are taken and what template format goes on the wire."""

    template_format: Literal["iso19794-2:2005", "iso19794-2:2011", "ansi-incits-378:2004"] = (
        "iso19794-2:2005"
    )
    send_wsq_image: bool = False  # also send the image, WSQ-compressed at 500 ppi
    finger_timeout: Annotated[float, Field(gt=0, le=10)] = 0.5


class Settings(BaseSettings):
    """Everything the daemon reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="KIOSK_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    device_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    state_dir: Path = Path("/var/lib/kiosk-edge")
    sensor: SensorConfig = SensorConfig()
    mqtt: MqttConfig = MqttConfig()
    quality: QualityConfig = QualityConfig()
    model: ModelConfig = ModelConfig()
    capture: CaptureConfig = CaptureConfig()

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment wins over them.
        return (env_settings, init_settings)


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` holds one line per bad field."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = path
        self.problems = problems


def load_settings(path: Path = DEFAULT_CONFIG_PATH) -> Settings:
    """Read ``path`` (TOML) and the environment; raise ConfigError listing every bad field."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 at byte {exc.start}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"{where}: {err['msg']}")
        raise ConfigError(path, problems) from None
