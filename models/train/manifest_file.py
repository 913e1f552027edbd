"""Writing ``manifest.json``: atomically, in the one layout every writer uses (no torch needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_manifest(path: Path, content: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(tmp, path)
