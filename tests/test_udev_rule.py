"""The udev rule: valid syntax, and exactly the ids of the driver's device table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.config import SensorConfig
from firmware_bridge.usb_devices import SUPPORTED_DEVICES

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "systemd" / "70-kiosk-sensor.rules"
SYSUSERS = ROOT / "systemd" / "kiosk-edge.sysusers"

_TOKEN = re.compile(
    r'\s*(?P<key>[A-Z_]+)(\{(?P<attr>[^{}]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"\s*'
)
_MATCH_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "ATTR", "ATTRS", "ENV", "DRIVERS", "SUBSYSTEMS"}
_ASSIGN_KEYS = {"GROUP", "MODE", "OWNER", "SYMLINK", "TAG", "GOTO", "LABEL", "ENV", "RUN"}

Rule = list[tuple[str, str | None, str, str]]


def parse_rules(text: str) -> list[Rule]:
    """Each rule as (key, attribute, operator, value) tuples; raises on anything udev rejects."""
    rules: list[Rule] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rule: Rule = []
        for part in line.split('",'):
            source = part if part.endswith('"') else part + '"'
            token = _TOKEN.fullmatch(source)
            if token is None:
                raise ValueError(f"line {number}: cannot parse {part!r}")
            key, attr, op, value = token["key"], token["attr"], token["op"], token["value"]
            allowed = _MATCH_KEYS if op in ("==", "!=") else _ASSIGN_KEYS
            if key not in allowed:
                raise ValueError(f"line {number}: {key} cannot be used with {op}")
            rule.append((key, attr, op, value))
        rules.append(rule)
    return rules


def value(rule: Rule, key: str, attr: str | None = None) -> str | None:
    found = [v for k, a, _, v in rule if k == key and a == attr]
    return found[0] if found else None


@pytest.fixture(scope="module")
def device_rules() -> list[Rule]:
    return [r for r in parse_rules(RULES.read_text()) if value(r, "SUBSYSTEM") is not None]


def test_the_rule_file_parses_and_every_goto_has_its_label() -> None:
    rules = parse_rules(RULES.read_text())
    labels = {value(r, "LABEL") for r in rules}
    gotos = {value(r, "GOTO") for r in rules} - {None}
    assert gotos and gotos <= labels


def test_the_parser_rejects_what_udev_would() -> None:
    with pytest.raises(ValueError, match="cannot parse"):
        parse_rules('SUBSYSTEM=="usb", GROUP=kiosk-edge')
    with pytest.raises(ValueError, match="GROUP cannot be used with =="):
        parse_rules('SUBSYSTEM=="usb", GROUP=="kiosk-edge"')


def test_each_supported_device_has_exactly_one_rule_and_no_rule_names_another(
    device_rules: list[Rule],
) -> None:
    ruled = set()
    for rule in device_rules:
        attribute = "ATTR" if value(rule, "SUBSYSTEM") == "usb" else "ATTRS"
        ids = (
            int(value(rule, attribute, "idVendor") or "-1", 16),
            int(value(rule, attribute, "idProduct") or "-1", 16),
            "usb" if value(rule, "SUBSYSTEM") == "usb" else "serial",
        )
        assert ids not in ruled, f"duplicate rule for {ids}"
        ruled.add(ids)
    table = {(d.vendor_id, d.product_id, d.transport) for d in SUPPORTED_DEVICES}
    assert ruled == table


def test_usb_rules_match_the_device_node_not_its_interfaces(device_rules: list[Rule]) -> None:
    for rule in device_rules:
        if value(rule, "SUBSYSTEM") == "usb":
            assert value(rule, "ENV", "DEVTYPE") == "usb_device"
        else:
            assert value(rule, "SUBSYSTEM") == "tty"


def test_every_sensor_is_the_service_users_and_reachable_at_the_configured_default(
    device_rules: list[Rule],
) -> None:
    service_user = SYSUSERS.read_text().split("\nu ", 1)[1].split()[0]
    default_port = Path(SensorConfig().port)
    for rule in device_rules:
        assert value(rule, "GROUP") == service_user
        assert value(rule, "MODE") == "0660"
        assert default_port.parent == Path("/dev")
        assert value(rule, "SYMLINK") == default_port.name


def test_the_service_may_open_the_netlink_socket_libusb_watches_hotplug_on() -> None:
    unit = (ROOT / "systemd" / "kiosk-edge.service").read_text()
    families = next(
        line.split("=", 1)[1].split()
        for line in unit.splitlines()
        if line.startswith("RestrictAddressFamilies=")
    )
    assert "AF_NETLINK" in families
