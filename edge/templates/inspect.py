"""A readable account of any template file, as a JSON-ready dict or as text."""

from __future__ import annotations

import dataclasses
from typing import Any

from edge.templates.ansi378_2004 import AnsiMinutiaeRecord
from edge.templates.convert import decode_any
from edge.templates.formats import TemplateFormat, detect_format
from edge.templates.iso19794_2_2005 import ExtendedDataBlock, FingerMinutiaeRecord
from edge.templates.iso19794_2_2011 import Iso2011Record

FORMAT_NAMES = {
    TemplateFormat.ISO2005: "ISO/IEC 19794-2:2005",
    TemplateFormat.ISO2011: "ISO/IEC 19794-2:2011",
    TemplateFormat.ANSI378: "ANSI INCITS 378-2004",
    TemplateFormat.XYT: "NIST .xyt",
}
ANGLE_DEGREES = {
    TemplateFormat.ISO2005: 360 / 256,
    TemplateFormat.ISO2011: 360 / 256,
    TemplateFormat.ANSI378: 2.0,
}


def describe(data: bytes) -> dict[str, Any]:
    """Every field of the record, minutia angles also in degrees; raises TemplateError."""
    fmt = detect_format(data)
    record = decode_any(data, fmt)
    out: dict[str, Any] = {"format": fmt.value, "standard": FORMAT_NAMES[fmt], "bytes": len(data)}
    if isinstance(record, list):
        out["minutiae"] = [
            {"x": m.x, "y": m.y, "angle_degrees": m.angle, "quality": m.quality} for m in record
        ]
        out["note"] = "y counted from the top; angle in the ISO direction (see docs/formats.md)"
        return out
    out.update(_fields(record, ANGLE_DEGREES[fmt]))
    return out


def _fields(
    record: FingerMinutiaeRecord | AnsiMinutiaeRecord | Iso2011Record, unit: float
) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, ExtendedDataBlock):
            return {"type": value.type_id, "length": len(value.data), "data": value.data.hex()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if "angle" in fields and "kind" in fields:
                fields["angle_degrees"] = round(fields["angle"] * unit, 3)
            return fields
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        return value

    result: dict[str, Any] = convert(record)
    return result


def render_text(description: dict[str, Any]) -> str:
    """Indented ``name: value`` lines; one line per minutia."""
    lines: list[str] = []

    def emit(value: Any, indent: str, name: str) -> None:
        if isinstance(value, dict):
            if _is_minutia(value):
                lines.append(f"{indent}{name}: " + _minutia_line(value))
                return
            lines.append(f"{indent}{name}:")
            for key, item in value.items():
                emit(item, indent + "  ", key)
        elif isinstance(value, list):
            lines.append(f"{indent}{name}: ({len(value)})")
            for number, item in enumerate(value):
                emit(item, indent + "  ", f"[{number}]")
        else:
            lines.append(f"{indent}{name}: {value}")

    for key, value in description.items():
        emit(value, "", key)
    return "\n".join(lines) + "\n"


def _is_minutia(value: dict[str, Any]) -> bool:
    return {"x", "y", "quality"} <= value.keys()


def _minutia_line(m: dict[str, Any]) -> str:
    kind = {0: "other", 1: "ending", 2: "bifurcation"}.get(m.get("kind", 0), "?")
    angle = m.get("angle_degrees", m.get("angle"))
    return f"{kind:<11} x {m['x']:>5} y {m['y']:>5} angle {angle:>7} quality {m['quality']}"
