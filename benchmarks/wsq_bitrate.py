"""WSQ bitrate and error at 500 ppi on synthetic fingers and, when given, the FVC2002 corpus.

    python benchmarks/wsq_bitrate.py [--corpus ../shared/corpus/fvc2002] [--fingers 10]

Prints one line per set: images, mean bits per pixel, compression ratio (8 bits / bpp) and the
mean absolute grey-level error after decoding. NBIS is asked for 0.75 bpp ("about 15:1");
what it reaches depends on how much of the image is background.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from edge.an2k import wsq
from hil.fingers import FingerGenerator


def measure(name: str, images: Iterable[npt.NDArray[np.uint8]]) -> None:
    rates, errors = [], []
    for pixels in images:
        data = wsq.encode(pixels)
        rates.append(8 * len(data) / pixels.size)
        errors.append(float(np.abs(wsq.decode(data).pixels.astype(int) - pixels).mean()))
    if not rates:
        print(f"{name}: no images")
        return
    bpp = float(np.mean(rates))
    print(
        f"{name}: {len(rates)} images, {bpp:.3f} bpp (min {min(rates):.3f}, max {max(rates):.3f}),"
        f" {8 / bpp:.1f}:1, mean abs error {np.mean(errors):.2f} grey levels"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="fvc2002 directory with DB*_B/*.tif")
    parser.add_argument("--fingers", type=int, default=10, help="synthetic fingers")
    args = parser.parse_args()
    generator = FingerGenerator(seed=11)
    measure("synthetic 256x288", (generator.impression_image(i, 0) for i in range(args.fingers)))
    if args.corpus:
        for db in sorted(p for p in args.corpus.glob("DB*") if p.is_dir()):
            paths = sorted(db.glob("*.tif"))
            measure(db.name, (np.asarray(Image.open(p).convert("L")) for p in paths))


if __name__ == "__main__":
    main()
