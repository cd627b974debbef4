"""Run folders: every notebook and CLI stage reads from and writes to ``runs/<run>/<NN_stage>/``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from reasonact.config import REPO_ROOT

# The SynthAct renderer's version: bump when the same seed would render different clips. Generated data
# and the tiny perception base are keyed by it (``data/synthact.py``, ``vlm.base_key``).
GENERATOR_VERSION = "1"


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


# The training stages in curriculum order and their folders. Each saves a PEFT adapter in
# ``<stage folder>/adapter``; a stage starts from the base with every earlier adapter merged in order.
STAGES = {"fre": "03_fre", "vsft": "04_video_sft", "tgrpo": "05_tgrpo"}


def adapter_dir(run: str | Path | None, stage: str, profile: str = "tiny") -> Path:
    return run_dir(run, profile) / STAGES[stage] / "adapter"


def prior_adapters(run: str | Path | None, stage: str, profile: str = "tiny", skip=()) -> list[Path]:
    """The adapters of the stages before ``stage`` that exist in the run (``skip``: stages to leave out,
    e.g. ``("fre",)`` for the no-FRE ablation). A missing earlier stage is simply not merged."""
    names = list(STAGES)
    earlier = names[: names.index(stage)]
    dirs = [adapter_dir(run, s, profile) for s in earlier if s not in skip]
    return [d for d in dirs if (d / "adapter_config.json").is_file()]
