"""Write synthetic impressions as PNG files plus a JSON file of their true minutiae.

python -m hil.fingers --seed 1 --fingers 4 --impressions 2 --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image

from edge.minutiae import Minutia
from hil.fingers.generator import FingerGenerator
from hil.fingers.impression import Quality

MINUTIAE_FILE = "minutiae.json"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    generator = FingerGenerator(args.seed)
    fingers: list[dict[str, Any]] = []
    for finger_id in range(args.fingers):
        master = generator.finger(finger_id)
        master_file = f"finger{finger_id:04d}_master.png"
        _write_png(out / master_file, master.image)
        impressions = []
        for impression_id in range(args.impressions):
            impression = generator.impression(
                finger_id, impression_id, args.width, args.height, args.ppi, args.quality
            )
            name = f"finger{finger_id:04d}_{impression_id:02d}.png"
            _write_png(out / name, impression.image)
            impressions.append(
                {
                    "impression_id": impression_id,
                    "file": name,
                    "minutiae": [_minutia(m) for m in impression.minutiae],
                }
            )
        fingers.append(
            {
                "finger_id": finger_id,
                "pattern_class": master.pattern_class,
                "master": {
                    "file": master_file,
                    "minutiae": [_minutia(m) for m in master.minutiae],
                },
                "impressions": impressions,
            }
        )
    document = {
        "seed": args.seed,
        "width": args.width,
        "height": args.height,
        "ppi": args.ppi,
        "quality": args.quality,
        "angle_convention": "degrees counter-clockwise from +x, y down (ISO/IEC 19794-2)",
        "fingers": fingers,
    }
    with _private(out / MINUTIAE_FILE) as stream:
        stream.write(json.dumps(document, indent=1).encode())
    print(f"wrote {args.fingers} fingers x {args.impressions} impressions to {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hil.fingers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=_non_negative, default=1)
    parser.add_argument("--fingers", type=_non_negative, default=4)
    parser.add_argument("--impressions", type=_non_negative, default=2)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=288)
    parser.add_argument("--ppi", type=float, default=500.0)
    parser.add_argument("--quality", choices=get_args(Quality), default="good")
    parser.add_argument("--out", type=Path, required=True)
    return parser


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _minutia(m: Minutia) -> dict[str, Any]:
    return {
        "x": round(m.x, 2),
        "y": round(m.y, 2),
        "angle": round(m.angle, 2),
        "kind": m.kind.name.lower(),
        "quality": m.quality,
    }


def _private(path: Path) -> Any:
    """Open ``path`` for writing, created owner-only like any file holding fingerprints."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _write_png(path: Path, pixels: npt.NDArray[np.uint8]) -> None:
    with _private(path) as stream:
        Image.fromarray(pixels).save(stream, format="PNG")


if __name__ == "__main__":
    raise SystemExit(main())
