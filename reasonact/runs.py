"""Run folders: every notebook and CLI stage reads from and writes to ``runs/<run>/<NN_stage>/``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from reasonact.config import REPO_ROOT


def run_dir(run: str | Path | None, profile: str = "tiny") -> Path:
    """``None`` -> ``runs/<profile>``; a relative path is taken from the repository root."""
    path = Path(run) if run else Path("runs") / profile
    return path if path.is_absolute() else REPO_ROOT / path


def stage_dir(run: str | Path | None, stage: str, profile: str = "tiny") -> Path:
    path = run_dir(run, profile) / stage
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clean(obj):
    """JSON-safe: numpy scalars -> Python, NaN/inf -> None (metrics.json must stay valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_metrics(directory: str | Path, metrics: dict, name: str = "metrics.json") -> Path:
    path = Path(directory) / name
    path.write_text(json.dumps(_clean(metrics), indent=2, sort_keys=True) + "\n")
    return path
