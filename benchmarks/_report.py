"""Writing a benchmark's JSON report under ``benchmarks/results/`` (shared by the bench scripts)."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def save(name: str, body: dict[str, Any], folder: Path = RESULTS) -> Path:
    """Write ``{"benchmark": name, "date": ..., "machine": ..., **body}`` to
    ``folder/NAME-YYYYmmdd-HHMMSS.json`` and print it; returns the path."""
    now = datetime.now(UTC)
    report = {"benchmark": name, "date": now.isoformat(timespec="seconds"), "machine": machine(), **body}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{now:%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return path
