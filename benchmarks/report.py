"""Where a benchmark's results go: ``results.json`` (machine-readable) and ``results.md``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def write_report(out: Path, results: dict[str, Any], lines: list[str]) -> None:
    """Write ``results`` as JSON and ``lines`` as the markdown table into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}/results.json, results.md", file=sys.stderr)
